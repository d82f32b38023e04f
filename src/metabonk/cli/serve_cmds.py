"""CLI verbs of the orchestrator: `metabonk serve` (the service and its dashboard), `serve token create`,
and `metabonk bench serve` (the load test)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metabonk.cli.app import app, bench_app
from metabonk.common.errors import MetabonkError
from metabonk.serve.config import ServeConfig

serve_app = typer.Typer(help="The orchestrator: FastAPI service + live dashboard (docs/serve.md).",
                        invoke_without_command=True)
token_app = typer.Typer(help="Write tokens of the orchestrator.", no_args_is_help=True)
serve_app.add_typer(token_app, name="token")
app.add_typer(serve_app, name="serve")

DataOpt = Annotated[Path, typer.Option("--data", help="Folder of the stores, models, artifacts and SQLite file.")]
DbOpt = Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL, e.g. postgresql+psycopg://u@host/db "
                                                        "(default: SQLite in --data).")]
DEFAULT_DATA = Path("runs/orchestrator")


def _config(data: Path, db: str | None, open_reads: bool = False) -> ServeConfig:
    if db is not None and not db.startswith(("sqlite", "postgresql")):
        raise MetabonkError(f"--db must be a sqlite:// or postgresql+psycopg:// URL, got {db!r}")
    return ServeConfig(data=data, db_url=db, open_reads=open_reads)


@serve_app.callback()
def serve_cmd(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to bind (another than loopback exposes the service).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    db: DbOpt = None,
    data: DataOpt = DEFAULT_DATA,
    open_reads: Annotated[bool, typer.Option("--open-reads", help="Serve reads to any host without a token.")]
    = False,
) -> None:
    """Run the orchestrator: workers, runs, episodes, playbook, models, events, live frames, /metrics and the
    dashboard at http://HOST:PORT/."""
    if ctx.invoked_subcommand is not None:
        return
    from metabonk.serve.app import run_server

    if not 0 < port < 65536:
        raise MetabonkError(f"--port must be in 1..65535, got {port}")
    cfg = _config(data, db, open_reads)
    typer.echo(f"metabonk orchestrator on http://{host}:{port}/ (data {data}, db {cfg.url})", err=True)
    run_server(cfg, host=host, port=port)


@token_app.command("create")
def token_create_cmd(
    name: Annotated[str, typer.Option(help="A label for the token (who uses it).")] = "default",
    db: DbOpt = None,
    data: DataOpt = DEFAULT_DATA,
) -> None:
    """Create a write token; it is printed once (only its hash is stored)."""
    from metabonk.serve.db import Database, upgrade
    from metabonk.serve.security import create_token

    cfg = _config(data, db)
    cfg.data.mkdir(parents=True, exist_ok=True)
    database = Database(cfg.url)
    try:
        upgrade(database.engine)
        typer.echo(create_token(database, name))
    finally:
        database.close()


@bench_app.command("serve")
def bench_serve_cmd(
    workers: Annotated[int, typer.Option(help="Simulated workers.")] = 16,
    seconds: Annotated[float, typer.Option(help="Duration of the load.")] = 120.0,
    fps: Annotated[float, typer.Option(help="Frames per second each worker pushes.")] = 30.0,
    episode_every_s: Annotated[float, typer.Option(help="Seconds between a worker's episode uploads.")] = 2.0,
    db: DbOpt = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Result file (default benchmarks/results/serve-cpu.json).")] = None,
) -> None:
    """Load test: N workers on loopback streaming frames and uploading episodes to a real server process;
    p50/p99 latency, frames/s delivered to a viewer, and integrity of every accepted episode."""
    from metabonk.bench.serve import ServeBenchArgs, main

    path = main(ServeBenchArgs(workers=workers, seconds=seconds, fps=fps, episode_every_s=episode_every_s,
                               db_url=db, json_path=str(json_path) if json_path else None))
    typer.echo(f"wrote {path}")
