"""A short load: 16 simulated workers on loopback streaming frames and uploading episodes to a server process.

Timing figures belong to `metabonk bench serve`; this checks what must hold under load: every accepted
episode is in the store exactly once with the bytes sent, the index agrees, no request failed, and frames
reached the viewers."""

from __future__ import annotations

from pathlib import Path

from metabonk.bench.serve import ServeBenchArgs, run_load


def test_sixteen_workers_lose_nothing(tmp_path: Path) -> None:
    res = run_load(ServeBenchArgs(workers=16, seconds=8.0, fps=30.0, episode_every_s=1.0, episode_steps=16,
                                  workdir=str(tmp_path)))
    integ = res["integrity"]
    assert res["errors"] == {}, res["errors"]
    assert integ["accepted"] >= 16, integ
    assert integ["lost"] == integ["duplicated"] == integ["unexpected"] == integ["corrupt"] == 0, integ
    assert integ["in_store"] == integ["indexed"] == integ["accepted"], integ
    assert res["frames_to_viewers_per_s"] > 0 and res["frames_pushed_per_s"] > 0
    # workers are paced by deadlines: their streams never run ahead of the fps asked for
    assert 0 < res["frames_streamed_per_worker_per_s"] <= 30.0 * 1.02
    assert res["heartbeat_count"] > 0 and res["episode_count"] == integ["accepted"]
