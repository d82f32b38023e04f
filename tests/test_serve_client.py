"""The client against a real server process: buffering while it is down, catching up, frames and events live."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from metabonk.serve.client import Orchestrator, RunReporter
from metabonk.serve.process import ServerProcess, free_port, make_token
from metabonk.serve.worker_client import WorkerReporter, download_checkpoint, upload_checkpoint
from tests.serve_helpers import episode


def test_reporter_buffers_while_down_and_catches_up(tmp_path: Path) -> None:
    data, port = tmp_path / "data", free_port()
    token = make_token(data)
    orch = Orchestrator(f"http://127.0.0.1:{port}", token, backoff=(0.05, 0.3))
    run = RunReporter(orch, name="train tiny", kind="train")
    run.stage("fit", "running", 0.25)
    for step in range(50):
        run.metric("loss", step, 1.0 / (step + 1))
    run.flush_metrics()
    time.sleep(0.5)
    assert orch.pending >= 3 and not orch.connected  # nothing reached a server that is not there
    server = ServerProcess(data, port=port).start()
    try:
        assert orch.flush(30)
        r = httpx.get(f"{server.url}/api/runs/{run.key}/metrics").json()  # loopback: reads need no token
        assert r[0]["steps"] == list(range(50))
        server.kill()  # the orchestrator dies; the run goes on
        for step in range(50, 80):
            run.metric("loss", step, 0.01)
        run.stage("fit", "done", 1.0)
        run.finish("done")
        time.sleep(0.5)
        assert orch.pending > 0
        server.start()
        assert orch.flush(30)
        got = httpx.get(f"{server.url}/api/runs/{run.key}").json()
        assert got["status"] == "done" and got["stages"][0]["status"] == "done"
        (series,) = httpx.get(f"{server.url}/api/runs/{run.key}/metrics").json()
        assert series["steps"] == list(range(80))  # every point once, in order, none lost or doubled
        assert orch.stats.rejected == 0 and orch.stats.dropped == 0 and orch.stats.retries > 0
    finally:
        orch.close(1)
        server.stop()


def test_frames_reach_a_viewer_and_events_stream(tmp_path: Path) -> None:
    from websockets.sync.client import connect

    data = tmp_path / "data"
    token = make_token(data)
    with ServerProcess(data) as server:
        events: list[tuple[str, dict]] = []

        def listen() -> None:
            with httpx.stream("GET", f"{server.url}/api/events", timeout=30) as r:
                kind = ""
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        events.append((kind, json.loads(line[6:])))
                        if kind == "episode":
                            return

        t = threading.Thread(target=listen, daemon=True)
        t.start()
        time.sleep(0.5)
        orch = Orchestrator(server.url, token)
        worker = WorkerReporter(orch, "arena-7", env="arena", frame_min_side=0)
        worker.heartbeat(force=True, intent="collect", fps=60.0, cards=["magnet"])
        assert orch.flush(10)
        frame = np.zeros((32, 32, 3), np.uint8)
        frame[:, :16] = 255
        with connect(f"ws://127.0.0.1:{server.port}/ws/workers/arena-7/view") as view:
            got = None
            for _ in range(50):
                worker.frame(frame)
                try:
                    got = view.recv(timeout=0.2)
                    break
                except TimeoutError:
                    continue
        assert isinstance(got, bytes) and got[:3] == b"\xff\xd8\xff"
        from io import BytesIO

        from PIL import Image

        img = np.asarray(Image.open(BytesIO(got)))
        assert img[:, :12].mean() > 200 and img[:, 20:].mean() < 55  # the frame that was sent, not any JPEG
        # a push without a token is refused
        try:
            with connect(f"ws://127.0.0.1:{server.port}/ws/workers/intruder/frames") as ws:
                ws.send(got)
                ws.recv(timeout=2)
            refused = False
        except Exception:
            refused = True
        assert refused
        worker.ensure_store("live", "arena", 4, 16)
        uid = worker.episode(episode(T=6, size=16), store="live", meta={"seed": 3})
        assert orch.flush(10)
        t.join(15)
        kinds = [k for k, _ in events]
        assert "worker" in kinds and "episode" in kinds
        assert next(d for k, d in events if k == "episode")["upload_id"] == uid
        w = httpx.get(f"{server.url}/api/workers/arena-7").json()
        assert w["state"]["intent"] == "collect" and w["state"]["cards"] == ["magnet"]
        metrics = httpx.get(f"{server.url}/metrics").text
        assert "metabonk_frames_received_total" in metrics and 'result="accepted"' in metrics
        worker.close()
        orch.close()


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    save_file({"w": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3)}, str(ckpt / "model.safetensors"))
    (ckpt / "config.json").write_text(json.dumps({"kind": "policy", "config": {"hidden": 8}}))
    data = tmp_path / "data"
    token = make_token(data)
    with ServerProcess(data) as server:
        orch = Orchestrator(server.url, token)
        v = upload_checkpoint(orch, "hive-core", ckpt, note="seed 0")
        assert v["version"] == 1 and v["config"]["kind"] == "policy"
        orch.request("POST", "/api/models/hive-core/versions/1/promote")
        out = download_checkpoint(orch, "hive-core", tmp_path / "back")
        from metabonk.common.checkpoint import read_config

        assert read_config(out)["config"] == {"hidden": 8}
        from safetensors.torch import load_file

        assert torch.equal(load_file(str(out / "model.safetensors"))["w"], torch.arange(6).reshape(2, 3).bfloat16())
        orch.close()
