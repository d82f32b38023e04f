"""kill -9 of the orchestrator in the middle of an upload: the store and the index stay consistent, the cut
upload is absent, and the client's retry of it lands exactly once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
from safetensors.numpy import load

from metabonk.data.store import EpisodeStore
from metabonk.serve.client import Orchestrator
from metabonk.serve.process import ServerProcess, make_token
from tests.serve_helpers import episode_body


def _count(url: str) -> dict[str, int]:
    return httpx.get(f"{url}/api/stores/live/count").json()


def test_kill_9_mid_upload_then_retry(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = make_token(data)
    auth = {"Authorization": f"Bearer {token}"}
    server = ServerProcess(data).start()
    try:
        url = server.url
        httpx.put(f"{url}/api/stores/live", json={"env_spec": "arena", "num_actions": 4, "frame_size": 32},
                  headers=auth).raise_for_status()
        for i in range(2):
            httpx.post(f"{url}/api/stores/live/episodes", content=episode_body(T=10, size=32, seed=i),
                       params={"upload_id": f"upload-ok-{i}"}, headers=auth).raise_for_status()
        big = episode_body(T=300, size=32, seed=7)  # ~0.9 MB, sent slowly in 64 KiB pieces
        sent = threading.Event()
        outcome: list[str] = []

        def slow() -> Iterator[bytes]:
            for i in range(0, len(big), 1 << 16):
                yield big[i : i + (1 << 16)]
                sent.set()
                time.sleep(0.1)

        def upload() -> None:
            try:
                r = httpx.post(f"{url}/api/stores/live/episodes", content=slow(), headers=auth, timeout=30,
                               params={"upload_id": "upload-cut-0"})
                outcome.append(f"status {r.status_code}")
            except httpx.HTTPError as e:
                outcome.append(type(e).__name__)

        t = threading.Thread(target=upload)
        t.start()
        assert sent.wait(10)
        deadline = time.monotonic() + 10
        while not list((data / "tmp").glob("*.part")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert list((data / "tmp").glob("*.part")), "the upload never started on the server"
        server.kill()
        t.join(30)
        assert outcome and not outcome[0].startswith("status 2"), outcome
        assert len(EpisodeStore.open(data / "stores" / "live")) == 2  # nothing half-written in the store

        server.start()
        assert list((data / "tmp").iterdir()) == []  # the part file of the cut upload is gone
        assert _count(url) == {"indexed": 2, "in_store": 2}
        ids = [e["upload_id"] for e in httpx.get(f"{url}/api/stores/live/episodes").json()]
        assert ids == ["upload-ok-0", "upload-ok-1"]

        orch = Orchestrator(url, token)  # the client retries the whole upload with the same id
        orch.send("POST", "/api/stores/live/episodes", content=big, params={"upload_id": "upload-cut-0"})
        orch.send("POST", "/api/stores/live/episodes", content=big, params={"upload_id": "upload-cut-0"})
        assert orch.flush(30) and orch.stats.rejected == 0
        orch.close()
        assert _count(url) == {"indexed": 3, "in_store": 3}  # once, though sent twice
        back = load(httpx.get(f"{url}/api/stores/live/episodes/2").content)
        assert np.array_equal(back["obs"], load(big)["obs"])
    finally:
        server.stop()


def test_crash_between_store_and_index_is_reconciled(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = make_token(data)
    auth = {"Authorization": f"Bearer {token}"}
    with ServerProcess(data) as server:
        httpx.put(f"{server.url}/api/stores/live", json={"env_spec": "arena", "num_actions": 4, "frame_size": 16},
                  headers=auth).raise_for_status()
    # the state a kill between the store's rename and the index row leaves: an episode the index lacks
    store = EpisodeStore.open(data / "stores" / "live")
    body = episode_body(T=5, size=16, seed=1)
    store.append(load(body), meta={"upload_id": "upload-orphan", "worker": "w3"})
    with ServerProcess(data) as server:
        assert _count(server.url) == {"indexed": 1, "in_store": 1}
        (row,) = httpx.get(f"{server.url}/api/stores/live/episodes").json()
        assert row["upload_id"] == "upload-orphan" and row["worker"] == "w3"
        r = httpx.post(f"{server.url}/api/stores/live/episodes", content=body, headers=auth,
                       params={"upload_id": "upload-orphan"})
        assert r.json()["duplicate"] is True and _count(server.url) == {"indexed": 1, "in_store": 1}
