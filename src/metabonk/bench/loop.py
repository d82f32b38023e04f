"""`metabonk bench loop`: throughput of the whole online loop — real env steps/s, imagined frames/s, and the
share of wall time in collection, world-model updates and imagination — timed over whole epochs after one
warm-up epoch, through the public `AgentLoop`."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from metabonk.common.results import write_result


def bench_loop(env: str = "scroll", preset: str = "tiny", epochs: int = 2, kernels: str = "eager",
               device: str = "auto", json_path: Path | None = None) -> dict[str, Any]:
    from metabonk.common.device import resolve_device
    from metabonk.train.agent_config import loop_config
    from metabonk.train.online import AgentLoop

    dev = resolve_device(device)
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        cfg = loop_config(preset, env=env, out=str(Path(tmp) / "run"), device=str(dev), kernels=kernels,
                          quiet=True, eval_episodes=0)
        first = cfg.start_steps
        cfg.env_steps = first + cfg.collect_steps * (epochs + 1)
        loop = AgentLoop(cfg)
        # the warm-up epoch (random collection + the first world updates) is timed apart from the steady ones
        t0 = time.perf_counter()
        cfg_steps = cfg.env_steps
        loop.cfg.env_steps = first + cfg.collect_steps
        loop.run_epochs()
        warm = time.perf_counter() - t0
        before = dict(loop.state["seconds"])
        steps0 = loop.env_steps
        loop.cfg.env_steps = cfg_steps
        t1 = time.perf_counter()
        loop.run_epochs()
        wall = time.perf_counter() - t1
        parts = {k: loop.state["seconds"][k] - before[k] for k in before}
        real = loop.env_steps - steps0
        imagined = epochs * cfg.ac_updates * cfg.ac_batch * cfg.imagination.horizon
        loop.close()
    figures = {
        "env": env, "preset": preset, "kernels": kernels, "epochs_timed": epochs, "warmup_epoch_s": warm,
        "wall_s": wall, "real_env_steps": real, "imagined_frames": imagined,
        "real_env_steps_per_s": real / wall, "imagined_frames_per_s": imagined / max(parts["imagination"], 1e-9),
        "world_updates_per_s": epochs * cfg.world_updates / max(parts["world"], 1e-9),
        "share": {k: v / wall for k, v in parts.items()}, "seconds": parts,
    }
    table = Table(title=f"online loop on {env} ({preset}, {dev}, {kernels})")
    for h in ("real steps/s", "imagined frames/s", "world updates/s", "collect", "world", "imagination"):
        table.add_column(h, justify="right")
    table.add_row(f"{figures['real_env_steps_per_s']:.1f}", f"{figures['imagined_frames_per_s']:.0f}",
                  f"{figures['world_updates_per_s']:.1f}",
                  *(f"{100 * figures['share'][k]:.0f} %" for k in ("collect", "world", "imagination")))
    Console().print(table)
    tag = "cpu" if dev.type == "cpu" else "gpu"
    path = json_path or Path("benchmarks/results") / f"loop-{env.replace(':', '-')}-{tag}.json"
    write_result(path, figures, dev)
    Console().print(f"wrote {path}")
    return figures
