"""Shared pieces of the orchestrator tests: an in-process app with a token, episodes, a PostgreSQL cluster."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from metabonk.serve.app import create_app
from metabonk.serve.config import ServeConfig
from metabonk.serve.process import free_port
from metabonk.serve.security import create_token
from metabonk.serve.worker_client import episode_bytes

PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name) if p.parent.name.isdigit()
             else 0, default=Path("/usr/lib/postgresql/15/bin"))
"""Debian's PostgreSQL server programs (initdb, pg_ctl), newest major version installed."""


@contextmanager
def app_client(data: Path, db_url: str | None = None, **cfg: Any) -> Iterator[tuple[TestClient, str]]:
    """A TestClient on a fresh app (lifespan run) and a write token for it."""
    app = create_app(ServeConfig(data=data, db_url=db_url, **cfg))
    token = create_token(app.state.svc.db)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client, token


def episode(T: int = 8, size: int = 16, seed: int = 0, actions: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"obs": rng.integers(0, 255, (T + 1, size, size, 3), dtype=np.uint8),
            "action": rng.integers(0, actions, T), "reward": rng.standard_normal(T).astype(np.float32)}


def episode_body(T: int = 8, size: int = 16, seed: int = 0, meta: dict[str, Any] | None = None) -> bytes:
    return episode_bytes(episode(T, size, seed), meta or {"seed": seed})


class PgCluster:
    def __init__(self, port: int) -> None:
        self.port = port
        self._n = 0

    def new_database(self) -> str:
        """CREATE a fresh database; its SQLAlchemy URL."""
        import psycopg

        self._n += 1
        name = f"metabonk_{self._n}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                                     autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE {name}")
                return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)


@contextmanager
def postgres() -> Iterator[PgCluster]:
    """A throwaway PostgreSQL cluster on a free loopback port (`.new_database()` gives a fresh URL).

    Raises (the test fails, it does not skip) when the server cannot be started.
    """
    if not (PG_BIN / "initdb").is_file():
        raise RuntimeError(f"PostgreSQL is not installed ({PG_BIN}/initdb missing): apt-get install postgresql")
    # initdb refuses to run as root, so as root the cluster belongs to the package's `postgres` user
    root = Path(tempfile.mkdtemp(prefix="metabonk-pg-"))
    user: str | None = None
    if os.geteuid() == 0:
        user = "postgres"
        pw = pwd.getpwnam(user)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    pgdata, port = root / "data", free_port()

    def run(*cmd: str) -> None:
        full = ["runuser", "-u", user, "--", *cmd] if user else list(cmd)
        out = subprocess.run(full, capture_output=True, text=True, timeout=120, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {out.stdout[-1500:]} {out.stderr[-1500:]}")

    try:
        run(str(PG_BIN / "initdb"), "-D", str(pgdata), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
        run(str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "-o", opts, "-l", str(root / "log"), "-w", "-t", "60", "start")
        try:
            yield PgCluster(port)
        finally:
            run(str(PG_BIN / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
