"""`metabonk bench policy`: System 1 per-step latency (p50/p99, batch 1) and batched throughput, both cores.

Measures the whole agent step (pixel encoder + core + heads) and the core alone. On CUDA the step is captured
in a CUDA graph (static inputs, one replay per tick), beside the eager figures. Needs only torch, ncps and
mambapy (no typer/gymnasium), so it runs on a bare GPU box.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metabonk.common.cuda_graphs import GraphReplay
from metabonk.common.device import device_label, resolve_device
from metabonk.common.results import write_result
from metabonk.policy.agent import Agent
from metabonk.policy.config import PolicyConfig


@dataclass
class BenchArgs:
    """Settings of the policy benchmark."""

    device: str = "cpu"
    cores: tuple[str, ...] = ("cfc", "mamba")
    latency_steps: int = 300
    """Timed ticks at batch 1 (after warm-up)."""
    big_batch: int = 4096
    big_repeats: int = 5
    cuda_graphs: bool = True
    compile: bool = True
    """On CPU, also time the agent with a torch.compile'd step (compiles once per batch size, ~30 s each)."""
    json_path: str | None = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inputs(
    agent: Agent, batch: int, device: torch.device
) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(batch)
    s = agent.cfg.image_size
    obs = {
        "pixels": torch.randint(0, 256, (batch, s, s, 3), dtype=torch.uint8, generator=g).to(device),
        "card_options": torch.randint(0, 11, (batch, 3), generator=g).to(device),
    }
    hidden = (torch.randn(batch, agent.core.state_size, generator=g) * 0.1).to(device)
    intent = torch.randint(0, agent.cfg.num_intents, (batch,), generator=g).to(device)
    return obs, hidden, intent


def _stepper(
    agent: Agent, batch: int, device: torch.device, part: str, graph: bool, capture_error_mode: str = "global"
) -> Callable[[], Any]:
    """A zero-argument tick; carries the hidden state like a real control loop. With `graph`, one CUDA graph
    replayed on the caller's current stream; capture_error_mode="thread_local" lets other threads launch
    kernels while it is captured."""
    obs, hidden, intent = _inputs(agent, batch, device)
    x = torch.randn(batch, agent.cfg.feature_dim + agent.cfg.intent_dim, device=device)
    state = {"h": hidden}

    def eager() -> Any:
        if part == "agent":
            out = agent.step(obs, state["h"], intent)
            state["h"] = out[3]
        else:
            _, state["h"] = agent.core.step(x, state["h"])
        return state["h"]

    if not graph:
        return eager
    static_h = hidden.clone()
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(3):
            state["h"] = static_h
            eager()
    torch.cuda.current_stream(device).wait_stream(stream)
    g = torch.cuda.CUDAGraph()
    state["h"] = static_h
    with torch.cuda.graph(g, capture_error_mode=capture_error_mode):  # type: ignore[arg-type]
        new_h = eager()

    # the graph reads obs / intent / x: the replay holds them (and carries the state into the next tick)
    return GraphReplay(g, static_h, keep=(obs, intent, x, new_h), after=lambda: static_h.copy_(new_h))


def _latency(fn: Callable[[], Any], steps: int, device: torch.device) -> dict[str, float]:
    for _ in range(max(10, steps // 10)):
        fn()
    _sync(device)
    times = np.empty(steps)
    for i in range(steps):
        t = time.perf_counter()
        fn()
        _sync(device)
        times[i] = time.perf_counter() - t
    return {"p50_ms": float(np.percentile(times, 50) * 1e3), "p99_ms": float(np.percentile(times, 99) * 1e3)}


def _throughput(fn: Callable[[], Any], batch: int, repeats: int, device: torch.device) -> float:
    fn()
    _sync(device)
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        rates.append(batch / (time.perf_counter() - t))
    return float(np.median(rates))


def run_bench(args: BenchArgs) -> dict[str, Any]:
    """Figures per core and part (agent = encoder+core+heads, core = recurrent core only)."""
    device = resolve_device(args.device)
    torch.manual_seed(0)
    graphs = args.cuda_graphs and device.type == "cuda"
    figures: dict[str, Any] = {
        "device": str(device),
        "cuda_graphs": graphs,
        "big_batch": args.big_batch,
        "batch1_cpu_threads": 1,
        "big_batch_threads": torch.get_num_threads(),
    }
    rows = []
    with torch.inference_mode(False), torch.no_grad():
        for core in args.cores:
            agent = Agent(PolicyConfig(core=core)).to(device).eval()
            params = sum(p.numel() for p in agent.parameters())
            for part in ("agent", "core"):
                modes = [("eager", False)] + ([("graph", True)] if graphs else [])
                if args.compile and device.type == "cpu" and part == "agent":
                    modes.append(("compile", False))
                for mode, g in modes:
                    stepper_agent = agent
                    if mode == "compile":
                        stepper_agent = copy.deepcopy(agent).compile_for_inference()
                    threads = torch.get_num_threads()
                    if device.type == "cpu":
                        torch.set_num_threads(
                            1
                        )  # a control loop owns one core; extra threads only add jitter
                    lat = _latency(_stepper(stepper_agent, 1, device, part, g), args.latency_steps, device)
                    torch.set_num_threads(threads)
                    big = _throughput(
                        _stepper(stepper_agent, args.big_batch, device, part, g),
                        args.big_batch,
                        args.big_repeats,
                        device,
                    )
                    row = {
                        "core": core,
                        "part": part,
                        "mode": mode,
                        "params": params,
                        "batch1_p50_ms": lat["p50_ms"],
                        "batch1_p99_ms": lat["p99_ms"],
                        f"batch{args.big_batch}_steps_per_s": big,
                    }
                    rows.append(row)
                    figures[f"{core}_{part}_{mode}"] = row
    figures["rows"] = rows
    return figures


def print_table(figures: dict[str, Any]) -> None:
    big = figures["big_batch"]
    header = ["core", "part", "mode", "params", "p50 ms (b=1)", "p99 ms (b=1)", f"steps/s (b={big})"]
    cells = [
        [
            r["core"],
            r["part"],
            r["mode"],
            f"{r['params']:,}",
            f"{r['batch1_p50_ms']:.3f}",
            f"{r['batch1_p99_ms']:.3f}",
            f"{r[f'batch{big}_steps_per_s']:,.0f}",
        ]
        for r in figures["rows"]
    ]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(" | ".join(header))
        for c in cells:
            print(" | ".join(c))
        return
    table = Table(title=f"System 1 policy step ({figures['device']})")
    for h in header:
        table.add_column(h, justify="right")
    for c in cells:
        table.add_row(*c)
    Console().print(table)


def main(args: BenchArgs) -> Path:
    figures = run_bench(args)
    print_table(figures)
    device = resolve_device(args.device)
    path = (
        Path(args.json_path)
        if args.json_path
        else Path("benchmarks/results") / f"policy-{device_label(device)}.json"
    )
    write_result(path, figures, device)
    return path


if __name__ == "__main__":
    import sys

    main(BenchArgs(device=sys.argv[1] if len(sys.argv) > 1 else "cpu"))
