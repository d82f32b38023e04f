"""The orchestrator's resources end to end in-process, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import load
from safetensors.numpy import save as st_save

from tests.serve_helpers import PgCluster, app_client, episode_body, postgres


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    with postgres() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    url = request.getfixturevalue("pg").new_database() if request.param == "postgresql" else None
    with app_client(tmp_path / "data", url) as (client, _token):
        assert client.get("/api/health").json()["database"] == request.param
        yield client


def test_workers_heartbeat_and_stale(api: TestClient) -> None:
    r = api.post("/api/workers", json={"name": "arena-0", "env": "arena", "policy": "p"})
    assert r.status_code == 200 and r.json()["stale"] is False
    state = {"intent": "kite", "fps": 58.5, "cards": ["armor"], "fallbacks": 2, "step": 100}
    r = api.post("/api/workers/arena-0/heartbeat", json={"state": state})
    assert r.json()["state"]["intent"] == "kite"
    assert api.post("/api/workers/nobody/heartbeat", json={"state": {}}).status_code == 404
    assert api.post("/api/workers/arena-0/heartbeat", json={"state": {"fps": -1}}).status_code == 422
    api.app.state.svc.config.stale_after_s = 0.0  # every worker is now older than the limit
    (w,) = api.get("/api/workers").json()
    assert w["stale"] is True and w["state"]["cards"] == ["armor"]
    assert 'metabonk_workers{state="stale"} 1.0' in api.get("/metrics").text


def test_run_stages_metrics_artifacts(api: TestClient) -> None:
    key = "run0000001"
    r = api.post("/api/runs", json={"key": key, "name": "demo tiny", "kind": "demo"})
    assert r.status_code == 200
    assert api.post("/api/runs", json={"key": key, "name": "again", "kind": "demo"}).json()["name"] == "demo tiny"
    api.post(f"/api/runs/{key}/stages", json={"name": "record", "status": "done", "progress": 1.0})
    r = api.post(f"/api/runs/{key}/stages", json={"name": "world", "status": "running", "progress": 0.5})
    assert [s["name"] for s in r.json()["stages"]] == ["record", "world"]
    assert r.json()["progress"] == pytest.approx(0.75)
    pts = [{"name": "world/loss", "step": s, "value": 1.0 / (s + 1)} for s in range(5)]
    assert api.post(f"/api/runs/{key}/metrics", json={"points": pts}).json() == {"accepted": 5}
    api.post(f"/api/runs/{key}/metrics", json={"points": pts[:2]})  # a retried batch: no duplicates
    (series,) = api.get(f"/api/runs/{key}/metrics").json()
    assert series["steps"] == [0, 1, 2, 3, 4] and series["values"][4] == pytest.approx(0.2)
    assert api.post(f"/api/runs/{key}/metrics", content='{"points":[{"name":"x","step":0,"value":NaN}]}',
                    headers={"Content-Type": "application/json"}).status_code == 422
    r = api.put(f"/api/runs/{key}/artifacts/report.md", content=b"# report\n")
    assert r.status_code == 200 and r.json()["media_type"] == "text/markdown"
    got = api.get(f"/api/runs/{key}/artifacts/report.md")
    assert got.content == b"# report\n" and got.headers["x-content-type-options"] == "nosniff"
    assert api.put(f"/api/runs/{key}/artifacts/evil.html", content=b"<script>").status_code == 400
    assert api.post(f"/api/runs/{key}/finish", json={"status": "done"}).json()["progress"] == 1.0


def test_episode_upload_validated_deduplicated_downloadable(api: TestClient) -> None:
    spec = {"env_spec": "arena", "num_actions": 4, "frame_size": 16}
    assert api.put("/api/stores/live", json=spec).status_code == 200
    body = episode_body(T=8, size=16, seed=1)
    r = api.post("/api/stores/live/episodes", content=body, params={"upload_id": "upload0001", "worker": "w0"})
    assert r.status_code == 200, r.text
    assert r.json()["index"] == 0 and r.json()["length"] == 8 and r.json()["duplicate"] is False
    again = api.post("/api/stores/live/episodes", content=body, params={"upload_id": "upload0001"})
    assert again.json()["duplicate"] is True and again.json()["index"] == 0
    bad = episode_body(T=8, size=32, seed=2)  # frames of the wrong size for this store
    r = api.post("/api/stores/live/episodes", content=bad, params={"upload_id": "upload0002"})
    assert r.status_code == 422 and "shape" in r.json()["detail"]
    r = api.post("/api/stores/live/episodes", content=b"\x00" * 64, params={"upload_id": "upload0003"})
    assert r.status_code == 422
    assert api.get("/api/stores/live/count").json() == {"indexed": 1, "in_store": 1}
    arrays = load(api.get("/api/stores/live/episodes/0").content)
    assert np.array_equal(arrays["obs"], load(body)["obs"])
    assert api.get("/api/stores/live/episodes/5").status_code == 404
    (row,) = api.get("/api/stores/live/episodes").json()
    assert row["worker"] == "w0" and len(row["sha256"]) == 64


def test_playbook_show_revert_reflect_diff(api: TestClient) -> None:
    assert api.get("/api/playbook").json()["version"] == 0
    stats = {"seed": 1, "survived_s": 80.0, "time_limit_s": 100.0, "died": True, "level": 4,
             "picks": ["armor", "armor"], "boss_spawned": 1}
    r = api.post("/api/playbook/reflect", json={"stats": stats, "baseline": 0.4})
    assert r.status_code == 200 and r.json()["version"] == 1 and r.json()["delta"] == pytest.approx(0.4)
    v1 = api.get("/api/playbook/versions/1").json()
    assert any("armor" in e["text"] for e in v1["entries"])
    r = api.post("/api/playbook/revert", json={"version": 0})
    assert r.json()["version"] == 2 and r.json()["entries"] == []
    assert [v["version"] for v in api.get("/api/playbook/versions").json()] == [0, 1, 2]
    d = api.get("/api/playbook/diff", params={"a": 1, "b": 2}).json()["diff"]
    assert d.count("\n-[") >= 1
    assert api.post("/api/playbook/revert", json={"version": 99}).status_code == 404


def _weights(scale: float) -> bytes:
    return st_save({"w": np.full((4, 4), scale, np.float32)}, metadata={"config": json.dumps({"kind": "policy"})})


def test_models_versions_promote_merge(api: TestClient) -> None:
    for i in (1, 2):
        r = api.post("/api/models/specialist/versions", content=_weights(i), params={"note": f"n{i}"})
        assert r.status_code == 200 and r.json()["version"] == i and r.json()["config"] == {"kind": "policy"}
    assert api.post("/api/models/specialist/versions", content=b"\x80\x04pickle").status_code == 422
    assert api.get("/api/models/specialist/download").status_code == 404  # nothing promoted yet
    assert load(api.get("/api/models/specialist/download", params={"which": "latest"}).content)["w"][0, 0] == 2
    api.post("/api/models/specialist/versions/1/promote")
    got = api.get("/api/models/specialist/download")
    assert got.headers["x-model-version"] == "1" and load(got.content)["w"][0, 0] == 1
    mr = api.post("/api/merge-requests", json={"target": "specialist", "method": "ties", "sources": [
        {"name": "specialist", "version": 1}, {"name": "specialist", "version": 2}]})
    assert mr.status_code == 200 and mr.json()["status"] == "open"
    bad = api.post("/api/merge-requests", json={"target": "x", "sources": [{"name": "specialist", "version": 9},
                                                                         {"name": "specialist", "version": 1}]})
    assert bad.status_code == 404
    r = api.post(f"/api/merge-requests/{mr.json()['id']}/resolve", json={"status": "merged", "result_version": 2})
    assert r.json()["status"] == "merged"
    assert api.post(f"/api/merge-requests/{mr.json()['id']}/resolve", json={"status": "rejected"}).status_code == 409


def test_writes_need_a_token_and_reads_need_loopback(tmp_path: Path) -> None:
    with app_client(tmp_path / "d") as (client, token):
        anon = TestClient(client.app)  # the test client's peer is "testclient": not loopback
        assert anon.post("/api/workers", json={"name": "w"}).status_code == 401
        assert anon.post("/api/workers", json={"name": "w"},
                         headers={"Authorization": "Bearer mbk_wrong"}).status_code == 401
        assert anon.get("/api/runs").status_code == 401
        assert anon.get("/api/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        client.app.state.svc.config.open_reads = True
        assert anon.get("/api/runs").status_code == 200
        assert anon.post("/api/workers", json={"name": "w"}).status_code == 401  # open reads, not writes
        digests = [t.digest for t in _tokens(client)]
        assert token not in digests and len(digests[0]) == 64  # only the hash is stored


def _tokens(client: TestClient) -> list:
    from sqlalchemy import select

    from metabonk.serve.db import Token

    with client.app.state.svc.db.session() as s:
        return list(s.scalars(select(Token)))


def test_size_limits_and_path_traversal(tmp_path: Path) -> None:
    with app_client(tmp_path / "d", max_episode_bytes=4096, max_json_bytes=2048) as (api, _):
        api.put("/api/stores/s", json={"env_spec": "arena", "num_actions": 4, "frame_size": 16})
        big = episode_body(T=8, size=16)
        assert len(big) > 4096
        r = api.post("/api/stores/s/episodes", content=big, params={"upload_id": "uploadbig1"})
        assert r.status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while it streams
            for i in range(0, len(big), 1000):
                yield big[i : i + 1000]

        r = api.post("/api/stores/s/episodes", content=chunks(), params={"upload_id": "uploadbig2"})
        assert r.status_code == 413
        assert list((tmp_path / "d" / "tmp").iterdir()) == []  # no part file left behind
        assert api.post("/api/workers", json={"name": "w", "host": "x" * 4000}).status_code == 413
        for name in ("..", "..%2F..%2Fetc", "%2e%2e", ".hidden", "a%2Fb", "a%5Cb", "%00"):
            r = api.put(f"/api/stores/{name}", json={"env_spec": "arena", "frame_size": 16})
            assert r.status_code in (404, 422, 400), (name, r.status_code)
            assert api.get(f"/api/runs/run0000001/artifacts/{name}").status_code in (404, 422, 400)
            assert api.get(f"/api/models/{name}/download").status_code in (404, 422, 400)
        assert api.get("/static/../pyproject.toml").status_code == 404
        assert api.get("/static/%2e%2e/app.py").status_code == 404
        outside = {p.name for p in (tmp_path).iterdir()}
        assert outside == {"d"}  # nothing was written beside the data folder
