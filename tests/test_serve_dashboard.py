"""The dashboard in a real browser (Debian's chromium through Playwright) against a real server process:
a run's progress, curves and live frames appear, and a playbook revert from the UI makes a new version."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from metabonk.planner.playbook import Entry, PlaybookStore
from metabonk.serve.client import Orchestrator, RunReporter
from metabonk.serve.process import ServerProcess, make_token
from metabonk.serve.worker_client import WorkerReporter

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run"]


def _seed_playbook(data: Path) -> None:
    pb = PlaybookStore(data / "playbook.sqlite")
    pb.commit([Entry("e1", "Prefer armor early.", ["card:armor"], 2, 0)], "first lesson")
    pb.commit([Entry("e1", "Prefer armor early.", ["card:armor"], 2, 1),
               Entry("e2", "Kite the boss.", ["boss"], 1, 0)], "second lesson")
    pb.close()


def _frames(worker: WorkerReporter, stop: threading.Event) -> None:
    k = 0
    while not stop.is_set():
        frame = np.zeros((64, 64, 3), np.uint8)
        frame[:, :, 1] = 80
        frame[(k * 3) % 56 : (k * 3) % 56 + 8, 20:28] = (255, 210, 0)
        worker.frame(frame)
        k += 1
        stop.wait(1 / 20)


def test_dashboard_progress_frames_and_revert(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    data = tmp_path / "data"
    token = make_token(data)
    _seed_playbook(data)
    shots = Path(os.environ.get("METABONK_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    png = tmp_path / "dream.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (64, 1, 3))).save(png)
    stop = threading.Event()
    with ServerProcess(data) as server:
        orch = Orchestrator(server.url, token)
        run = RunReporter(orch, name="demo tiny arena", kind="demo")
        run.stage("record", "done", 1.0)
        run.stage("world", "running", 0.5, "world: 500/1000")
        for step in range(0, 200, 10):
            run.metric("world/loss", step, 1.0 / (1 + step / 20))
        run.flush_metrics()
        (tmp_path / "report.md").write_text("# Demo report\n\nsurvival 1234 steps\n")
        run.artifact(tmp_path / "report.md")
        run.artifact(png)
        worker = WorkerReporter(orch, "arena-0", env="arena", policy="runs/demo/policy")
        worker.heartbeat(force=True, intent="kite", fps=60.0, cards=["armor", "magnet"], fallbacks=1, step=900)
        assert orch.flush(20)
        pusher = threading.Thread(target=_frames, args=(worker, stop), daemon=True)
        pusher.start()
        problems: list[str] = []
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1500})
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.goto(server.url + "/", wait_until="domcontentloaded")
                page.wait_for_selector(f'#runs tr[data-run="{run.key}"] .run-progress', timeout=20_000)
                assert page.text_content(f'#runs tr[data-run="{run.key}"] .run-progress') == "75%"
                page.wait_for_selector('canvas[data-metric="world/loss"]', timeout=20_000)
                page.wait_for_selector("#artifacts pre.artifact", timeout=20_000)
                assert "survival 1234 steps" in page.text_content("#artifacts pre.artifact")
                page.wait_for_function("() => { const i = document.querySelector('#live-frame');"
                                       " return i && i.naturalWidth > 0 && Number(i.dataset.frames) >= 3; }",
                                       timeout=20_000)
                page.wait_for_selector('dd[data-field="intent"]:has-text("kite")', timeout=20_000)
                assert "armor, magnet" in page.text_content('dd[data-field="cards"]')
                # progress moves live: the page follows the run through server-sent events
                run.stage("world", "done", 1.0)
                assert orch.flush(10)
                page.wait_for_function(f"() => document.querySelector('#runs tr[data-run=\"{run.key}\"] "
                                       ".run-progress').textContent === '100%'", timeout=20_000)
                page.screenshot(path=str(shots / "dashboard.png"), full_page=True)

                page.fill("#token", token)
                page.dispatch_event("#token", "change")
                page.click('button.revert[data-version="1"]')
                page.wait_for_function("() => document.querySelector('#playbook-head').dataset.version === '3'",
                                       timeout=20_000)
                page.wait_for_selector('#playbook-version-title:has-text("v3")', timeout=10_000)
                page.screenshot(path=str(shots / "dashboard-revert.png"), full_page=True)
                browser.close()
        finally:
            stop.set()
            pusher.join(5)
            worker.close()
            orch.close(2)
        v3 = httpx.get(f"{server.url}/api/playbook/versions/3").json()
        v1 = httpx.get(f"{server.url}/api/playbook/versions/1").json()
        assert v3["entries"] == v1["entries"] and v3["reason"] == "revert to v1 from the dashboard"
    assert problems == [], problems
    assert (shots / "dashboard.png").stat().st_size > 10_000
    if os.environ.get("METABONK_KEEP_SCREENSHOTS"):
        shutil.copy(shots / "dashboard.png", os.environ["METABONK_KEEP_SCREENSHOTS"])
