"""serve-llm cannot be abused: API key, no CORS by default, bounded requests, clean 4xx, no orphaned child."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from metabonk.planner.llm_guard import guard
from tests.hardening_helpers import assert_one_line_error, run_cli


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"got": len(await request.body())})


def _client(**kw: object) -> TestClient:
    return TestClient(guard(Starlette(routes=[Route("/v1/chat", _echo, methods=["POST"])]), **kw))  # type: ignore[arg-type]


def test_api_key_is_required_when_set() -> None:
    c = _client(api_key="s3cret")
    assert c.post("/v1/chat", json={}).status_code == 401
    assert c.post("/v1/chat", json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.post("/v1/chat", json={}, headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_big_bodies_and_malformed_json_are_clean_4xx() -> None:
    c = _client(max_body=4096)
    r = c.post("/v1/chat", content=b"{" + b" " * 50_000_000 + b"}", headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    r = c.post("/v1/chat", content=b'{"messages": [', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "request body is not valid JSON"
    body = json.dumps({"messages": []}).encode()
    assert c.post("/v1/chat", content=body).json() == {"got": len(body)}  # the app still reads the whole body


@pytest.mark.llm
def test_real_llama_app_has_no_cors_and_answers_bad_json_with_400() -> None:
    from metabonk.planner.embedded import find_gguf
    from metabonk.planner.llm_guard import llama_app

    c = TestClient(llama_app(str(find_gguf(None)), "smollm2", n_threads=1, n_ctx=256))  # type: ignore[arg-type]
    evil = {"Origin": "https://evil.example"}
    r = c.get("/v1/models", headers=evil)
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    r = c.options("/v1/chat/completions", headers={**evil, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers
    r = c.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "/" not in r.text.replace("</", "")


def test_non_loopback_host_needs_a_key_and_the_key_stays_off_the_command_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METABONK_LLM_API_KEY", raising=False)
    code, text = run_cli(["serve-llm", "--host", "0.0.0.0", "--dry-run"])
    assert_one_line_error(code, text, "set an API key")
    monkeypatch.setenv("METABONK_LLM_API_KEY", "s3cret")
    code, text = run_cli(["serve-llm", "--host", "0.0.0.0", "--dry-run"])
    assert code == 0 and "s3cret" not in text and "metabonk.planner.llm_guard" in text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.is_file() and "State:\tZ" in status.read_text())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_the_server_child_stops_with_its_parent(tmp_path: Path, sig: signal.Signals) -> None:
    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    parent = subprocess.Popen([sys.executable, "-c", "import sys; from metabonk.planner.serve import run_server; "
                               f"run_server([sys.executable, '-c', {child!r}])"])
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = int(pid_file.read_text())
    assert _alive(pid)
    parent.send_signal(sig)
    parent.wait(timeout=30)
    deadline = time.monotonic() + 15
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), f"the server child outlived its parent ({sig.name})"
