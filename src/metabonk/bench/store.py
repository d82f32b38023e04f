"""Episode-store benchmark: append throughput, open time, random-window and sequential-window read rates."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def _game_frames(rng: np.random.Generator, T: int, size: int) -> np.ndarray:
    """Non-constant frames (noise over a gradient) so nothing is accidentally cheap."""
    grad = np.linspace(0, 200, size, dtype=np.float32)[None, :, None, None]
    noise = rng.integers(0, 55, size=(T, size, size, 3), dtype=np.uint8)
    return (noise + grad.astype(np.uint8).transpose(0, 2, 1, 3)).astype(np.uint8)


def run_store_bench(
    episodes: int = 40, steps: int = 500, size: int = 64, batch: int = 64, T: int = 16,
    repeats: int = 20, workdir: str | Path | None = None, seed: int = 0,
) -> dict[str, Any]:
    """Time the store on a fresh directory (deleted afterwards) and return the figures."""
    from metabonk.data.store import EpisodeStore

    rng = np.random.default_rng(seed)
    root = Path(tempfile.mkdtemp(prefix="metabonk-store-bench-", dir=workdir))
    try:
        store = EpisodeStore.create(root / "s", "bench", 18, size)
        eps = [{"obs": _game_frames(rng, steps + 1, size), "action": rng.integers(0, 18, steps),
                "reward": rng.standard_normal(steps).astype(np.float32)} for _ in range(min(episodes, 4))]
        t0 = time.perf_counter()
        for i in range(episodes):
            store.append(eps[i % len(eps)])
        t_append = time.perf_counter() - t0
        frame_bytes = episodes * (steps + 1) * size * size * 3

        t0 = time.perf_counter()
        store = EpisodeStore.open(root / "s")
        t_open = time.perf_counter() - t0

        store.sample_windows(batch, T, rng)  # warm the handle cache / page cache once
        t0 = time.perf_counter()
        for _ in range(repeats):
            store.sample_windows(batch, T, rng, keys=("obs", "action", "reward"))
        t_sample = time.perf_counter() - t0

        t0 = time.perf_counter()
        n_seq = sum(b["obs"].shape[0] for b in store.iter_windows(T, T, batch_size=batch))
        t_seq = time.perf_counter() - t0
        return {
            "episodes": episodes, "steps_per_episode": steps, "frame_size": size, "batch": batch, "T": T,
            "append_episodes_per_s": episodes / t_append,
            "append_MB_per_s": frame_bytes / t_append / 1e6,
            "append_steps_per_s": episodes * steps / t_append,
            "open_ms": t_open * 1e3,
            "sample_batches_per_s": repeats / t_sample,
            "sample_frames_per_s": repeats * batch * (T + 1) / t_sample,
            "iter_windows_per_s": n_seq / t_seq,
            "load_avg_1min": os.getloadavg()[0],  # the CPU is shared: note how busy it was
            "disk_MB": sum(f.stat().st_size for f in (root / "s").rglob("*") if f.is_file()) / 1e6,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
