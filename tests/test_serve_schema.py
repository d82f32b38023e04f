"""The alembic migrations build exactly the ORM's schema (SQLite and PostgreSQL), and the CLI's bad input is
one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from metabonk.serve.db import Base, Database, upgrade
from tests.serve_helpers import postgres


def _diff(url: str) -> list:
    db = Database(url)
    try:
        upgrade(db.engine)
        upgrade(db.engine)  # a second upgrade is a no-op
        with db.engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        db.close()


def test_migrations_match_the_models(tmp_path: Path) -> None:
    assert _diff(f"sqlite:///{tmp_path / 'o.sqlite'}") == []
    with postgres() as pg:
        assert _diff(pg.new_database()) == []


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metabonk", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, check=False)


def test_cli_token_and_bad_input(tmp_path: Path) -> None:
    out = _cli("serve", "token", "create", "--data", str(tmp_path / "d"), "--name", "ci", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("mbk_") and len(out.stdout.strip()) > 40
    bad = _cli("serve", "--db", "mysql://x", "--data", str(tmp_path / "d"), cwd=tmp_path)
    assert bad.returncode == 2 and "error:" in bad.stderr and "Traceback" not in bad.stderr
    down = _cli("serve", "token", "create", "--db", "postgresql+psycopg://u@127.0.0.1:1/x", "--data",
                str(tmp_path / "d"), cwd=tmp_path)
    assert down.returncode == 2 and "cannot reach the orchestrator database" in down.stderr
    assert "Traceback" not in down.stderr and len(down.stderr.strip().splitlines()) <= 3
