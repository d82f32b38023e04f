"""`metabonk bench adaptive`: adaptive compute in the dream (the seeds' "mixture of depths"), frames/s against
fidelity, in one run (issue 22).

Variants of one trained world model on held-out episodes of a store: one Euler step for every frame, the full
`num_steps` schedule for every frame (the reference), and adaptive compute at several shares of hard frames
(`DiffusionSampler.sample_adaptive`: one denoiser call finds the frames that change most; only those get the
full schedule), each beside its control: the same share picked at random (same compute, no signal). Fidelity:
open-loop PSNR against the real frames over `horizon` steps from the same starts and the same seed. Speed:
`DreamEnv.step` at a fixed batch, median of repeats.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metabonk.world.dream_env import DreamEnv
from metabonk.world.evaluate import fidelity
from metabonk.world.sampler import hard_count
from metabonk.world.world_model import WorldModel


def _variants(num_steps: int, fractions: tuple[float, ...]) -> list[tuple[str, dict[str, Any]]]:
    rows: list[tuple[str, dict[str, Any]]] = [("1 step", {"num_steps": 1})]
    rows.append((f"{num_steps} steps", {"num_steps": num_steps}))
    for f in fractions:
        rows.append((f"adaptive {f:g}", {"num_steps": num_steps, "hard_fraction": f}))
        rows.append((f"random {f:g} (control)", {"num_steps": num_steps, "hard_fraction": f, "hard_select": "random"}))
    return rows


def _calls_per_frame(kw: dict[str, Any], batch: int) -> float:
    n, f = kw["num_steps"], kw.get("hard_fraction")
    if f is None:
        return float(n)
    return 1.0 + (n - 1) * hard_count(batch, f) / batch


def _frames_per_s(model: WorldModel, frames: torch.Tensor, actions: torch.Tensor, kw: dict[str, Any],
                  batch: int, steps: int, repeats: int) -> float:
    k = model.config.num_context
    idx = torch.arange(batch) % frames.shape[0]
    env = DreamEnv(model, seed=0, **kw)
    acts = actions[idx, k - 1].to(model.device)

    def run() -> None:
        env.reset(frames[idx, :k], actions[idx, :k])
        for _ in range(steps):
            env.step(acts)
        if model.device.type == "cuda":
            torch.cuda.synchronize(model.device)

    run()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return batch * steps / statistics.median(times)


def run_adaptive_bench(
    model: WorldModel,
    frames: torch.Tensor,
    actions: torch.Tensor,
    num_steps: int = 3,
    fractions: tuple[float, ...] = (0.1, 0.25, 0.5),
    horizon: int = 8,
    batch: int = 256,
    speed_steps: int = 4,
    repeats: int = 3,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """One row per variant: denoiser calls per frame, frames/s, PSNR per step and its mean over the horizon."""
    rows = []
    ref_psnr: list[float] | None = None
    for name, kw in _variants(num_steps, fractions):
        fid = fidelity(model, frames, actions, horizon, seed=seed, dream_kw=kw)
        fps = _frames_per_s(model, frames, actions, kw, batch, speed_steps, repeats)
        row = {"variant": name, **kw, "denoiser_calls_per_frame": _calls_per_frame(kw, batch),
               "frames_per_s": fps, "psnr_db": fid["psnr"], "psnr_mean_db": float(np.mean(fid["psnr"])),
               "copy_last_psnr_mean_db": float(np.mean(fid["copy_psnr"]))}
        if name == f"{num_steps} steps":
            ref_psnr = fid["psnr"]
        rows.append(row)
        log(f"{name:24s} {row['denoiser_calls_per_frame']:5.2f} calls/frame {fps:10.1f} frames/s "
            f"PSNR mean {row['psnr_mean_db']:.2f} dB")
    assert ref_psnr is not None
    for row in rows:
        row["psnr_mean_delta_vs_full_db"] = row["psnr_mean_db"] - float(np.mean(ref_psnr))
    one = next(r for r in rows if r["variant"] == "1 step")
    for row in rows:  # share of the full schedule's PSNR gain over one step that this variant keeps
        gain = float(np.mean(ref_psnr)) - one["psnr_mean_db"]
        row["share_of_full_gain"] = (row["psnr_mean_db"] - one["psnr_mean_db"]) / gain if abs(gain) > 1e-9 else None
    return {"num_steps": num_steps, "horizon": horizon, "starts": int(frames.shape[0]), "speed_batch": batch,
            "speed_steps": speed_steps, "seed": seed, "rows": rows}


def print_table(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"adaptive compute in the dream ({res['starts']} held-out starts, {res['horizon']} steps)")
    for c in ("variant", "calls/frame", "frames/s", "PSNR mean dB", "Δ vs full", "share of full gain"):
        t.add_column(c)
    for r in res["rows"]:
        share = "—" if r["share_of_full_gain"] is None else f"{r['share_of_full_gain']:.2f}"
        t.add_row(r["variant"], f"{r['denoiser_calls_per_frame']:.2f}", f"{r['frames_per_s']:,.0f}",
                  f"{r['psnr_mean_db']:.2f}", f"{r['psnr_mean_delta_vs_full_db']:+.2f}", share)
    Console().print(t)


def default_json(device: torch.device) -> Path:
    from metabonk.common.device import device_label

    return Path("benchmarks/results") / f"adaptive-{device_label(device)}.json"
