"""`metabonk bench env` machinery: a tiny run writes the documented JSON figures and ratios, timing the public
vector env (make_env) beside the bare game kernel, with the reference in the same run."""

from __future__ import annotations

import json
from pathlib import Path

from metabonk.bench.env import run_env_bench


def test_env_bench_writes_figures(tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    figs = run_env_bench(
        device="cpu", batches=[1, 8], seconds=0.05, repeats=2, references=True, json_path=out
    )
    doc = json.loads(out.read_text())
    keys = {"batch1_state", "batch1_pixels", "batch8_state", "batch8_pixels"}
    assert set(figs["make_env"]) == set(figs["kernel"]) == keys
    env8 = doc["results"]["make_env"]["batch8_pixels"]
    assert env8["steps_per_s"] > 0 and len(env8["repeats_steps_per_s"]) == 2
    pong = doc["results"]["pong"]["steps_per_s"]
    assert abs(env8["ratio_vs_pong"] - env8["steps_per_s"] / pong) < 1e-9
    assert len(env8["repeats_ratio_vs_pong"]) == 2
    assert doc["results"]["headline"]["target_ratio_vs_pong"] == 10.0  # batch 1024 was not run here
    assert doc["results"]["headline"]["ratio_vs_pong"] is None
    assert doc["results"]["bytes_per_frame_out"] == 64 * 64 * 3
    assert doc["machine"]["torch"] and "git_dirty" in doc["machine"]
