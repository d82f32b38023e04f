"""Talking to the orchestrator from a run or a worker: writes go through an in-order background queue that
buffers while the orchestrator is unreachable and catches up when it is back; the caller never waits.

    orch = Orchestrator("http://127.0.0.1:8000", token)       # token: `metabonk serve token create`
    run = RunReporter(orch, name="train world", kind="train")
    run.stage("world", "running", progress=0.3)
    run.metric("loss", step, value)                            # batched into one request per ~0.5 s
    run.artifact("runs/x/report.md")
    run.finish("done"); orch.close()

Every queued write is idempotent on the server (client-chosen run keys and upload ids, metric points keyed by
name and step), so a request retried after a lost answer never counts twice. Live frames are not buffered:
a frame is only worth showing now (see `metabonk.serve.worker_client`).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from metabonk.common.errors import MetabonkError
from metabonk.common.logging import console

TOKEN_ENV = "METABONK_TOKEN"


class OrchestratorError(MetabonkError):
    """The orchestrator refused a request or could not be reached (synchronous calls only)."""


@dataclass
class _Item:
    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    params: dict[str, str] | None = None
    coalesce: str | None = None
    size: int = 0


@dataclass
class QueueStats:
    sent: int = 0
    retries: int = 0
    rejected: int = 0
    dropped: int = 0
    last_error: str = ""
    rejected_examples: list[str] = field(default_factory=list)


class Orchestrator:
    """An orchestrator URL + token, a synchronous `request`, and a background queue for `send`."""

    def __init__(self, url: str, token: str | None = None, max_items: int = 20_000, max_bytes: int = 512 << 20,
                 timeout: float = 30.0, backoff: tuple[float, float] = (0.25, 5.0)) -> None:
        if not url.startswith(("http://", "https://")):
            raise MetabonkError(f"--orchestrator must be an http(s) URL, got {url!r}")
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.max_items, self.max_bytes, self.backoff = max_items, max_bytes, backoff
        self.stats = QueueStats()
        self.connected = True
        self._q: deque[_Item] = deque()
        self._bytes = 0
        self._inflight: _Item | None = None
        self._cv = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="orchestrator-client", daemon=True)
        self._thread.start()

    # ---- synchronous
    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One request now; OrchestratorError on a refusal or when the orchestrator cannot be reached."""
        try:
            r = self.http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise OrchestratorError(f"cannot reach the orchestrator at {self.url}: {e}") from e
        if r.status_code >= 400:
            raise OrchestratorError(f"orchestrator refused {method} {path}: {r.status_code} {_detail(r)}")
        return r

    # ---- queued
    def send(self, method: str, path: str, json: Any = None, content: bytes | None = None,
             params: dict[str, str] | None = None, coalesce: str | None = None) -> None:
        """Queue a write; with `coalesce`, a queued item of the same key not yet sent is replaced (heartbeats)."""
        item = _Item(method, path, json, content, params, coalesce, len(content or b"") + 256)
        with self._cv:
            if self._closing:
                raise MetabonkError("the orchestrator client is closed")
            if coalesce is not None:
                for i, old in enumerate(self._q):
                    if old.coalesce == coalesce and old is not self._inflight:
                        self._q[i] = item
                        self._bytes += item.size - old.size
                        self._cv.notify_all()
                        return
            self._q.append(item)
            self._bytes += item.size
            while (len(self._q) > self.max_items or self._bytes > self.max_bytes) and len(self._q) > 1:
                victim = self._q[1] if self._q[0] is self._inflight else self._q[0]
                self._q.remove(victim)
                self._bytes -= victim.size
                self.stats.dropped += 1
            self._cv.notify_all()

    @property
    def pending(self) -> int:
        with self._cv:
            return len(self._q)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued write was sent (or refused); False if `timeout` passed first."""
        end = time.monotonic() + timeout
        with self._cv:
            while self._q:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.2))
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Try to send what is queued for up to `timeout` s, then stop (what is left is reported, not lost silently)."""
        ok = self.flush(timeout)
        with self._cv:
            self._closing = True
            left = len(self._q)
            self._cv.notify_all()
        self._thread.join(timeout=2.0)
        self.http.close()
        if not ok:
            console.print(f"[yellow]orchestrator: {left} update(s) not delivered to {self.url} "
                          f"({self.stats.last_error})[/]")

    def _loop(self) -> None:
        delay = self.backoff[0]
        while True:
            with self._cv:
                while not self._q and not self._closing:
                    self._cv.wait()
                if self._closing:
                    return
                item = self._inflight = self._q[0]
            try:
                r = self.http.request(item.method, item.path, json=item.json, content=item.content,
                                      params=item.params)
                retry = r.status_code >= 500 or r.status_code in (408, 429)
                err = f"{r.status_code} {_detail(r)}" if r.status_code >= 400 else ""
            except httpx.TransportError as e:
                retry, err = True, f"unreachable: {type(e).__name__}"
            if retry:
                self.connected = False
                self.stats.retries += 1
                self.stats.last_error = err
                with self._cv:
                    self._inflight = None
                    self._cv.wait(delay)
                delay = min(delay * 2, self.backoff[1])
                continue
            delay = self.backoff[0]
            self.connected = True
            with self._cv:
                if self._q and self._q[0] is item:
                    self._q.popleft()
                    self._bytes -= item.size
                self._inflight = None
                if err:
                    self.stats.rejected += 1
                    self.stats.last_error = err
                    if len(self.stats.rejected_examples) < 5:
                        self.stats.rejected_examples.append(f"{item.method} {item.path}: {err}")
                else:
                    self.stats.sent += 1
                self._cv.notify_all()


def _detail(r: httpx.Response) -> str:
    try:
        return str(r.json().get("detail", r.text))[:300]
    except ValueError:
        return r.text[:300]


def new_key() -> str:
    return uuid.uuid4().hex


class RunReporter:
    """A run's stages, metrics and artifacts, reported in the background (see the module docstring)."""

    def __init__(self, orchestrator: Orchestrator | str, name: str, kind: str = "other",
                 config: dict[str, Any] | None = None, key: str | None = None, flush_every_s: float = 0.5) -> None:
        self.orch = orchestrator if isinstance(orchestrator, Orchestrator) else Orchestrator(orchestrator)
        self._own = not isinstance(orchestrator, Orchestrator)
        self.key = key or new_key()
        self.flush_every_s = flush_every_s
        self._points: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        self.finished = False
        self.orch.send("POST", "/api/runs", json={"key": self.key, "name": name[:256], "kind": kind,
                                                  "config": config or {}})

    @property
    def url(self) -> str:
        return f"{self.orch.url}/#run={self.key}"

    def stage(self, name: str, status: str = "running", progress: float = 0.0, message: str = "") -> None:
        self.flush_metrics()
        self.orch.send("POST", f"/api/runs/{self.key}/stages",
                       json={"name": name, "status": status, "progress": max(0.0, min(1.0, float(progress))),
                             "message": message[:4000]}, coalesce=f"stage:{self.key}:{name}")

    def metric(self, name: str, step: int, value: float) -> None:
        v = float(value)
        if v != v or v in (float("inf"), float("-inf")):
            return  # JSON has no NaN/inf; a diverged value shows as a gap in the curve
        with self._lock:
            self._points.append({"name": name, "step": int(step), "value": v, "t": time.time()})
            due = len(self._points) >= 500 or time.monotonic() - self._last_flush >= self.flush_every_s
        if due:
            self.flush_metrics()

    def metrics(self, step: int, **values: float) -> None:
        for name, value in values.items():
            self.metric(name, step, value)

    def flush_metrics(self) -> None:
        with self._lock:
            points, self._points = self._points, []
            self._last_flush = time.monotonic()
        for i in range(0, len(points), 5000):
            self.orch.send("POST", f"/api/runs/{self.key}/metrics", json={"points": points[i : i + 5000]})

    def artifact(self, path: str | Path, name: str | None = None) -> None:
        p = Path(path)
        if not p.is_file():
            return
        self.orch.send("PUT", f"/api/runs/{self.key}/artifacts/{name or p.name}", content=p.read_bytes())

    def finish(self, status: str = "done") -> None:
        self.flush_metrics()
        self.orch.send("POST", f"/api/runs/{self.key}/finish", json={"status": status})
        self.finished = True

    def close(self, timeout: float = 10.0) -> None:
        self.flush_metrics()
        if self._own:
            self.orch.close(timeout)
        else:
            self.orch.flush(timeout)

    def __enter__(self) -> RunReporter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if not self.finished:
            self.finish("failed" if exc_type is not None else "done")
        self.close()
