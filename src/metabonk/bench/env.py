"""Environment speed benchmark: Arena steps/s at several batch sizes (with and without pixels) against
ALE Pong and Crafter in the same run, reported as ratios (shared CPUs are noisy; ratios are not).

Two Arena figures per case: `make_env` is the public vector env a user steps (numpy in and out, autoreset),
`kernel` the bare batched game (tensors only, a masked reset every 16 ticks). The headline is the issue's
target, make_env at batch 1024 with 64x64 pixels over ALE Pong's single env.

Only torch is required: gymnasium/ALE/Crafter/rich are skipped (and the skip recorded) when not importable,
so the GPU machine can run `PYTHONPATH=src python3 -c "from metabonk.bench.env import run_env_bench; ..."`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from metabonk.common.device import device_label, resolve_device
from metabonk.common.results import write_result
from metabonk.envs.arena.config import ArenaConfig
from metabonk.envs.arena.game import ArenaGame
from metabonk.envs.arena.spec import NUM_ACTIONS


def _median_rate(fn: Callable[[], tuple[int, float]], repeats: int) -> tuple[float, list[float]]:
    rates = []
    for _ in range(repeats):
        items, secs = fn()
        rates.append(items / secs)
    return statistics.median(rates), rates


def time_arena(
    batch: int, pixels: bool, device: torch.device, seconds: float, size: int = 64, seed: int = 0
) -> tuple[int, float]:
    """(env steps, seconds) of `batch` Arena games stepped (and rendered) for about `seconds`."""
    game = ArenaGame(ArenaConfig(frame_size=size), batch, device, seed)
    g = torch.Generator(device=device).manual_seed(seed)
    pool = torch.randint(0, NUM_ACTIONS, (64, batch), generator=g, device=device)

    def one(i: int) -> None:
        game.step(pool[i % 64])
        if pixels:
            game.render()
        if i % 16 == 15:
            game.reset_done(game.s["done"])

    for i in range(8):  # warm-up (allocator, lazy renderer)
        one(i)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    steps, t0 = 0, time.perf_counter()
    while True:
        for i in range(8):
            one(steps + i)
        steps += 8
        sync()
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return steps * batch, dt


def time_arena_graphed(
    batch: int, device: torch.device, seconds: float, size: int = 64, seed: int = 0
) -> tuple[int, float]:
    """Like `time_arena` with pixels, but step + render + autoreset replayed as one captured CUDA graph.

    The game state lives in static buffers that the captured step copies its result back into, and the
    game's generator is registered with the graph, so every replay advances the games (fresh randomness).
    """
    game = ArenaGame(ArenaConfig(frame_size=size), batch, device, seed)
    game.render()
    static = {k: v.clone() for k, v in game.s.items()}

    def one() -> torch.Tensor:
        game.s = dict(static)
        actions = torch.randint(0, NUM_ACTIONS, (batch,), generator=game.gen, device=device)
        game.step(actions)
        frame = game.render()
        game.reset_done(game.s["done"])
        for k, v in game.s.items():
            static[k].copy_(v)
        return frame

    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            one()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    graph.register_generator_state(game.gen)
    with torch.cuda.graph(graph):
        one()
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize(device)
    steps, t0 = 0, time.perf_counter()
    while True:
        for _ in range(8):
            graph.replay()
        steps += 8
        torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return steps * batch, dt


def check_no_host_sync(device: torch.device, batch: int = 256) -> dict[str, Any]:
    """Step, render and autoreset under torch.cuda sync-debug mode 'error': any host-device sync raises."""
    game = ArenaGame(ArenaConfig(), batch, device, 0)
    pool = torch.randint(0, NUM_ACTIONS, (32, batch), device=device)
    for i in range(4):
        game.step(pool[i])
        game.render()
    torch.cuda.synchronize(device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(32):
            game.step(pool[i])
            game.render()
            game.reset_done(game.s["done"])
        return {"no_host_sync_in_step_render_reset": True}
    except RuntimeError as e:
        return {"no_host_sync_in_step_render_reset": False, "error": str(e)[:400]}
    finally:
        torch.cuda.set_sync_debug_mode(0)


def time_pong(seconds: float, seed: int = 0) -> tuple[int, float]:
    import ale_py
    import gymnasium as gym
    import numpy as np

    gym.register_envs(ale_py)
    env = gym.make("ALE/Pong-v5")
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    n_act = int(env.action_space.n)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(64):
            _, _, term, trunc, _ = env.step(int(rng.integers(n_act)))
            if term or trunc:
                env.reset()
        steps += 64
    dt = time.perf_counter() - t0
    env.close()
    return steps, dt


def time_crafter(seconds: float, seed: int = 0) -> tuple[int, float]:
    import crafter
    import numpy as np

    env = crafter.Env(seed=seed)
    env.reset()
    rng = np.random.default_rng(seed)
    n_act = int(env.action_space.n)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(16):
            _, _, done, _ = env.step(int(rng.integers(n_act)))
            if done:
                env.reset()
        steps += 16
    return steps, time.perf_counter() - t0


def time_vector_env(
    batch: int, pixels: bool, device: torch.device, seconds: float, size: int = 64, seed: int = 0
) -> tuple[int, float]:
    """(env steps, seconds) of `make_env("arena", num_envs=batch, size=size)` stepped with random actions
    for about `seconds`: what a user steps (numpy actions in, numpy obs and info out, SAME_STEP autoreset)."""
    import numpy as np

    from metabonk.envs import make_env

    env = make_env("arena", num_envs=batch, size=size, seed=seed, device=str(device), pixels=pixels)
    env.reset(seed=seed)
    pool = np.random.default_rng(seed).integers(0, NUM_ACTIONS, size=(64, batch))
    for i in range(4):  # warm-up (allocator, lazy renderer)
        env.step(pool[i])
    steps, t0 = 0, time.perf_counter()
    while True:
        for i in range(4):
            env.step(pool[(steps + i) % 64])
        steps += 4
        dt = time.perf_counter() - t0
        if dt >= seconds:
            env.close()
            return steps * batch, dt


HEADLINE = {"batch": 1024, "pixels": True, "target_ratio_vs_pong": 10.0}
"""The issue's target: make_env("arena", num_envs=1024, size=64) ≥ 10× ALE Pong's single env, same run."""


def run_env_bench(
    device: str = "cpu",
    batches: list[int] | None = None,
    seconds: float = 1.0,
    repeats: int = 3,
    references: bool = True,
    json_path: str | Path | None = None,
    size: int = 64,
    graph_batches: list[int] | None = None,
    kernel: bool = True,
) -> dict[str, Any]:
    """Run the benchmark, print a table, write the JSON result; returns the figures.

    Each repeat times every case once, in turn (the vector env, the bare game kernel, the references), so a
    load spike on the shared machine hits all of them alike; the figures are medians over the repeats."""
    dev = resolve_device(device)
    batches = batches or [1, 64, 1024]
    if graph_batches is None and dev.type == "cuda":
        graph_batches = [max(batches)]
    figures: dict[str, Any] = {
        "frame_size": size,
        "seconds_per_repeat": seconds,
        "repeats": repeats,
        "arena_cpu_threads": 1 if dev.type == "cpu" else None,
        "torch_threads": torch.get_num_threads(),
        "make_env": {},
        "kernel": {},
    }
    cases: dict[tuple[str, str], Callable[[], tuple[int, float]]] = {}
    for n in batches:
        for pixels in (False, True):
            key = f"batch{n}_{'pixels' if pixels else 'state'}"
            cases["make_env", key] = lambda n=n, p=pixels: time_vector_env(n, p, dev, seconds, size)
            if kernel:
                cases["kernel", key] = lambda n=n, p=pixels: time_arena(n, p, dev, seconds, size)
    if dev.type == "cuda":
        figures["sync_check"] = check_no_host_sync(dev)
        for n in graph_batches or []:
            cases["kernel", f"batch{n}_pixels_cudagraph"] = lambda n=n: time_arena_graphed(n, dev, seconds, size)
    refs = {"pong": time_pong, "crafter": time_crafter} if references else {}
    for name, fn in refs.items():
        cases["reference", name] = lambda fn=fn: fn(seconds)
    rates: dict[tuple[str, str], list[float]] = {k: [] for k in cases}
    for _ in range(repeats):
        for k, fn in list(cases.items()):
            try:
                items, secs = fn()
            except (ImportError, RuntimeError, AttributeError) as e:  # a reference not installed, no graphs
                figures.setdefault("skipped", {})[":".join(k)] = f"{type(e).__name__}: {str(e)[:300]}"
                del cases[k], rates[k]
                continue
            rates[k].append(items / secs)
    for (group, key), rs in rates.items():
        entry = {"steps_per_s": statistics.median(rs), "repeats_steps_per_s": rs}
        if group == "reference":
            figures[key] = entry
        else:
            figures[group][key] = entry
    for name in refs:
        ref = figures.get(name, {}).get("steps_per_s")
        if not ref:
            continue
        for group in ("make_env", "kernel"):
            for key, v in figures[group].items():
                v[f"ratio_vs_{name}"] = v["steps_per_s"] / ref
                per_repeat = zip(rates[group, key], rates["reference", name], strict=True)
                v[f"repeats_ratio_vs_{name}"] = [a / b for a, b in per_repeat]
    figures["headline"] = _headline(figures)
    bytes_per_frame = size * size * 3
    figures["bytes_per_frame_out"] = bytes_per_frame
    figures["notes"] = (
        "Per 64x64 frame: 12,288 output bytes (H*W*3); the background costs 6 row images (6*W*3 bytes) "
        "built per game and one row-wise index_select (a memcpy of H rows of W*3 bytes); sprites are discs "
        "stamped with scatter_ (about 1,800 stamp pixels per frame over all slots when dense on GPU, only "
        "live entities on CPU). CPU: per-op overhead bounds small batches; at batch 1024 the step's "
        "[N, projectiles, enemies] collision tensors and the stamp index arithmetic dominate. GPU: the dense "
        "stamp index arithmetic and scattered byte writes bound large batches; output bandwidth is ~1% of "
        "an H100's ~3 TB/s copy bandwidth, so the renderer is far from the memory ceiling."
    )
    best = max(
        (v["steps_per_s"] for k, v in figures["make_env"].items() if "pixels" in k),
        default=0.0,
    )
    figures["best_pixels_frames_per_s"] = best
    if dev.type == "cuda":
        figures["gpu_bytes_per_s_at_best"] = best * bytes_per_frame
    path = Path(json_path) if json_path else Path("benchmarks/results") / f"env-{device_label(dev)}.json"
    write_result(path, figures, dev)
    _print_table(figures, dev, path)
    return figures


def _headline(figures: dict[str, Any]) -> dict[str, Any]:
    """The target figure: make_env at batch 1024 with pixels over ALE Pong, median and per-repeat ratios."""
    key = f"batch{HEADLINE['batch']}_{'pixels' if HEADLINE['pixels'] else 'state'}"
    v = figures["make_env"].get(key, {})
    ratio = v.get("ratio_vs_pong")
    out: dict[str, Any] = {"what": f"make_env('arena', num_envs={HEADLINE['batch']}) {key} / ALE Pong 1 env"}
    out.update(target_ratio_vs_pong=HEADLINE["target_ratio_vs_pong"], ratio_vs_pong=ratio)
    if ratio is not None:
        out["repeats_ratio_vs_pong"] = v["repeats_ratio_vs_pong"]
        out["met"] = ratio >= HEADLINE["target_ratio_vs_pong"]
    return out


def _print_table(figures: dict[str, Any], dev: torch.device, path: Path) -> None:
    pong = figures.get("pong", {}).get("steps_per_s")
    rows = [(f"{group} {key}", v["steps_per_s"]) for group in ("make_env", "kernel")
            for key, v in figures[group].items()]
    rows += [(f"{name} (1 env, random)", figures[name]["steps_per_s"]) for name in ("pong", "crafter")
             if "steps_per_s" in figures.get(name, {})]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for name, rate in rows:
            ratio = f"{rate / pong:.2f}x pong" if pong else ""
            print(f"{name:40s} {rate:14,.0f} steps/s {ratio}")
        print(f"wrote {path}")
        return
    table = Table(title=f"env steps/s on {dev} (median of {figures['repeats']})")
    table.add_column("what")
    table.add_column("steps/s", justify="right")
    table.add_column("× ALE Pong", justify="right")
    for name, rate in rows:
        table.add_row(name, f"{rate:,.0f}", f"{rate / pong:.2f}" if pong else "-")
    con = Console()
    con.print(table)
    h = figures["headline"]
    if h.get("ratio_vs_pong") is not None:
        con.print(f"{h['what']}: {h['ratio_vs_pong']:.2f}x (target {h['target_ratio_vs_pong']:.0f}x: "
                  f"{'met' if h['met'] else 'NOT met'})")
    con.print(f"wrote {path}")
