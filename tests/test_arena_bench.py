"""`metabonk bench env` machinery: a tiny run writes the documented JSON figures and ratios."""

from __future__ import annotations

import json
from pathlib import Path

from metabonk.bench.env import run_env_bench


def test_env_bench_writes_figures(tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    figs = run_env_bench(
        device="cpu", batches=[1, 8], seconds=0.05, repeats=1, references=False, json_path=out
    )
    doc = json.loads(out.read_text())
    assert doc["results"]["arena"]["batch8_pixels"]["steps_per_s"] > 0
    assert set(figs["arena"]) == {"batch1_state", "batch1_pixels", "batch8_state", "batch8_pixels"}
    assert doc["results"]["bytes_per_frame_out"] == 64 * 64 * 3
    assert doc["machine"]["torch"]
