"""The online loop (`metabonk train agent`): it runs end to end and writes its report, a run killed with SIGKILL
resumes with no replay lost, and a bad --out is refused with one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from metabonk.cli import app

FAST = ["--env", "scroll", "--preset", "tiny", "--world-updates", "4", "--ac-updates", "2", "--collect-steps",
        "200", "--device", "cpu"]


def test_cli_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "agent", "--out", str(out), "--env-steps", "1400", "--eval-episodes", "4",
                                 *FAST, "--set", "ac_lr=2e-3", "--set", "imagination.horizon=6"])
    assert r.exit_code == 0, r.output
    state = json.loads((out / "loop.json").read_text())
    assert state["config"]["ac_lr"] == 2e-3 and state["config"]["imagination"]["horizon"] == 6  # --set landed
    assert state["epoch"] == 3 and [p["env_steps"] for p in state["curve"]] == [1000, 1200, 1400]
    doc = json.loads((out / "eval.json").read_text())["results"]
    assert doc["eval"]["policy"]["episodes"] == 4 and "random" in doc["eval"]
    assert 0.0 <= doc["world_heads"]["termination_f1"] <= 1.0
    assert (out / "curve.png").stat().st_size > 0 and "Online loop on scroll" in (out / "report.md").read_text()
    # a finished run resumes as a no-op; a larger budget continues it
    r = CliRunner().invoke(app, ["train", "agent", "--out", str(out), "--env-steps", "1600", "--eval-episodes", "0",
                                 *FAST])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "loop.json").read_text())["epoch"] == 4


def _episode_files(run: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in (run / "replay").rglob("*.safetensors")}


def test_sigkill_resumes_without_losing_replay(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "metabonk", "train", "agent", "--out", str(out), "--env-steps", "3000",
           "--eval-episodes", "0", *FAST]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # kill once two epochs are checkpointed
            f = out / "loop.json"
            if f.is_file() and json.loads(f.read_text())["epoch"] >= 2:
                break
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
        else:
            raise AssertionError("no checkpoint within 240 s")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    before = _episode_files(out)
    epoch_before = json.loads((out / "loop.json").read_text())["epoch"]
    assert before and epoch_before >= 2
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    after = _episode_files(out)
    assert all(after.get(k) == v for k, v in before.items()), "an episode written before the kill was lost"
    state = json.loads((out / "loop.json").read_text())
    steps = [p["env_steps"] for p in state["curve"]]
    assert state["epoch"] > epoch_before and steps[-1] >= 3000 and np.all(np.diff(steps) > 0)


def test_bad_out_is_one_line(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    monkeypatch.chdir(tmp_path)
    for out in (".", str(tmp_path)):
        r = subprocess.run([sys.executable, "-m", "metabonk", "train", "agent", "--out", out, *FAST],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and "Traceback" not in r.stderr and "error" in r.stderr, r.stderr
    assert (tmp_path / "mine.txt").read_text() == "keep me" and sorted(os.listdir(tmp_path)) == ["mine.txt"]
