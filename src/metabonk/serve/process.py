"""An orchestrator in a child process on a free loopback port (the load benchmark and the tests drive one)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from metabonk.common.errors import MetabonkError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_token(data: Path, db_url: str | None = None, name: str = "default") -> str:
    """A write token for the orchestrator that will serve `data` / `db_url` (migrates the database first)."""
    from metabonk.serve.config import ServeConfig
    from metabonk.serve.db import Database, upgrade
    from metabonk.serve.security import create_token

    cfg = ServeConfig(data=data, db_url=db_url)
    data.mkdir(parents=True, exist_ok=True)
    db = Database(cfg.url)
    try:
        upgrade(db.engine)
        return create_token(db, name)
    finally:
        db.close()


class ServerProcess:
    """`python -m metabonk serve` on 127.0.0.1:PORT; `start` waits until /api/health answers."""

    def __init__(self, data: Path, db_url: str | None = None, port: int | None = None,
                 log: Path | None = None) -> None:
        self.data, self.db_url = Path(data), db_url
        self.port = port or free_port()
        self.log = log or self.data.parent / f"{self.data.name}-server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        cmd = [sys.executable, "-m", "metabonk", "serve", "--port", str(self.port), "--data", str(self.data)]
        if self.db_url:
            cmd += ["--db", self.db_url]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise MetabonkError(f"orchestrator exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/api/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise MetabonkError(f"orchestrator did not answer within {timeout:.0f} s: {self.log.read_text()[-2000:]}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the crash the fault tests inflict."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
