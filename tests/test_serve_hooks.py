"""`--orchestrator URL` of `metabonk play agent` and `metabonk demo`: what they report reaches the server."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load

from metabonk.common.logging import ScalarLogger, progress_bar
from metabonk.planner.async_planner import AsyncPlanner
from metabonk.planner.experiment import ARENA_OVERRIDES
from metabonk.planner.planner import Planner
from metabonk.serve.hooks import DemoReporter, reporting_controller
from metabonk.serve.process import ServerProcess, make_token
from metabonk.two_systems import run_two_systems
from tests.test_controller import tiny_agent
from tests.test_policy_helpers import one_thread  # noqa: F401  (autouse fixture)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ServerProcess:
    data = tmp_path / "data"
    monkeypatch.setenv("METABONK_TOKEN", make_token(data))
    with ServerProcess(data) as s:
        yield s


def test_play_agent_streams_frames_state_and_episodes(server: ServerProcess) -> None:
    agent = tiny_agent()
    planner = AsyncPlanner(Planner(None), period_s=0.5, route="rule")
    ctrl = reporting_controller(server.url, agent, planner, "cpu", policy="tiny", name="play-test")
    res = run_two_systems(agent, planner, episodes=2, seed=0, max_steps=60, env_overrides=ARENA_OVERRIDES,
                          controller=ctrl)
    ctrl.close()
    w = httpx.get(f"{server.url}/api/workers/play-test").json()
    assert w["state"]["step"] == res["ticks"] and w["state"]["intent"]
    frame = httpx.get(f"{server.url}/api/workers/play-test/frame.jpg")
    assert frame.status_code == 200 and frame.content[:3] == b"\xff\xd8\xff"
    rows = httpx.get(f"{server.url}/api/stores/play-arena-32/episodes").json()
    assert [r["length"] for r in rows] == [s - 1 for s in res["survival"]]
    ep = load(httpx.get(f"{server.url}/api/stores/play-arena-32/episodes/0").content)
    assert ep["obs"].shape == (res["survival"][0], 32, 32, 3) and ep["truncated"][-1]
    assert ep["reward"].shape == (res["survival"][0] - 1,) and ep["action"].max() < 32


def test_demo_reporter_stages_live_curves_and_artifacts(server: ServerProcess, tmp_path: Path) -> None:
    hook = DemoReporter(server.url, "demo tiny arena", ["record", "bc"], {"preset": "tiny"})
    hook("record", "running", {})
    logger = ScalarLogger(None)
    with progress_bar("record", total=4, disable=True) as advance:
        for step in range(4):
            logger.log(step, loss=1.0 / (step + 1))
            advance()
    hook("record", "done", {"seconds": 2.0})
    hook("bc", "running", {})
    logger.log(0, loss=5.0)
    hook("bc", "failed", {"error": "RuntimeError: boom"})
    run_dir = tmp_path / "run"
    (run_dir / "report").mkdir(parents=True)
    (run_dir / "report.md").write_text("# report\n")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(run_dir / "report" / "curves.png")
    hook.finish(run_dir, ok=False)
    (run,) = httpx.get(f"{server.url}/api/runs").json()
    assert run["status"] == "failed" and [s["status"] for s in run["stages"]] == ["done", "failed"]
    assert run["stages"][1]["message"] == "RuntimeError: boom"
    series = {m["name"]: m for m in httpx.get(f"{server.url}/api/runs/{run['key']}/metrics").json()}
    assert series["record/loss"]["steps"] == [0, 1, 2, 3] and series["bc/loss"]["values"] == [5.0]
    names = [a["name"] for a in httpx.get(f"{server.url}/api/runs/{run['key']}/artifacts").json()]
    assert names == ["report-curves.png", "report.md"]


def test_train_agent_reports_its_run(server: ServerProcess, tmp_path: Path) -> None:
    """`metabonk train agent --orchestrator URL`: a train run with the loop stage done, live curves, the report."""
    import subprocess
    import sys

    out = tmp_path / "agent"
    res = subprocess.run([sys.executable, "-m", "metabonk", "train", "agent", "--env", "scroll", "--preset", "tiny",
                          "--env-steps", "300", "--collect-steps", "100", "--world-updates", "2", "--ac-updates", "2",
                          "--eval-episodes", "2", "--device", "cpu", "--out", str(out), "--orchestrator", server.url],
                         capture_output=True, text=True, timeout=500)
    assert res.returncode == 0, res.stderr[-2000:]
    (run,) = httpx.get(f"{server.url}/api/runs").json()
    assert run["kind"] == "train" and run["status"] == "done"
    assert [(s["name"], s["status"]) for s in run["stages"]] == [("loop", "done")]
    series = httpx.get(f"{server.url}/api/runs/{run['key']}/metrics").json()
    assert any(m["name"].startswith("loop/") and m["steps"] for m in series), series
    names = [a["name"] for a in httpx.get(f"{server.url}/api/runs/{run['key']}/artifacts").json()]
    assert "report.md" in names, names


def test_hive_run_reports_its_run(server: ServerProcess, tmp_path: Path) -> None:
    """`metabonk hive run --orchestrator URL` (a real local Ray, toy niches): a hive run, its targets as curves,
    the report."""
    import subprocess
    import sys

    out = tmp_path / "hive"
    res = subprocess.run([sys.executable, "-m", "metabonk", "hive", "run", "--specialists", "left,right",
                          "--steps", "256", "--num-envs", "4", "--num-steps", "8", "--episodes", "4",
                          "--test-episodes", "4", "--dm", "off", "--num-cpus", "2", "--out", str(out),
                          "--orchestrator", server.url], capture_output=True, text=True, timeout=500)
    assert res.returncode == 0, res.stderr[-2000:]
    (run,) = httpx.get(f"{server.url}/api/runs").json()
    assert run["kind"] == "hive" and run["status"] == "done"
    assert [(s["name"], s["status"]) for s in run["stages"]] == [("hive", "done")]
    series = {m["name"]: m for m in httpx.get(f"{server.url}/api/runs/{run['key']}/metrics").json()}
    assert series["hive/gap_over_soup_points"]["steps"] == [0], series.keys()
    names = [a["name"] for a in httpx.get(f"{server.url}/api/runs/{run['key']}/artifacts").json()]
    assert any(n.startswith("report") for n in names), names
