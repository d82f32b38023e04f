"""`metabonk bench store` runs on a tiny store and writes a result JSON with positive rates."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import metabonk.cli  # noqa: F401  (registers every verb)
from metabonk.cli.app import app


def test_bench_store_writes_result(tmp_path):
    out = tmp_path / "store-cpu.json"
    r = CliRunner().invoke(app, ["bench", "store", "--episodes", "3", "--steps", "20", "--size", "16",
                                 "--batch", "4", "--T", "5", "--json", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    res = doc["results"]
    assert doc["machine"]["torch"] and res["episodes"] == 3
    for k in ("append_MB_per_s", "sample_frames_per_s", "iter_windows_per_s", "open_ms"):
        assert res[k] > 0, k
    # 3 episodes x 21 frames x 16x16x3 bytes of frames, plus headers/actions/rewards
    assert 3 * 21 * 16 * 16 * 3 / 1e6 < res["disk_MB"] < 0.2
