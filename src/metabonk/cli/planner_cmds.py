"""CLI verbs of the planner area: `serve-llm`, `playbook show|history|diff|revert`, `bench planner`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metabonk.cli.app import app, bench_app, playbook_app
from metabonk.common.errors import MetabonkError

DB_HELP = "Playbook database (SQLite)."
DEFAULT_DB = Path("runs/planner/playbook.sqlite")


@app.command("serve-llm")
def serve_llm(
    backend: Annotated[str, typer.Option(help="llama (embedded SmolLM2 GGUF, CPU) | vllm (GPU)")] = "llama",
    model: Annotated[
        str | None,
        typer.Option(help="llama: a GGUF path (default: bundled SmolLM2); vllm: model id or directory."),
    ] = None,
    host: Annotated[str, typer.Option(help="Listen address (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen port.")] = 8080,
    threads: Annotated[int, typer.Option(help="llama: CPU threads.")] = 2,
    quantization: Annotated[str | None, typer.Option(help="vllm: awq | gptq | fp8 ...")] = None,
    speculative_model: Annotated[
        str | None, typer.Option(help="vllm: draft model for speculative decoding.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the server command and exit.")] = False,
    api_key: Annotated[str | None, typer.Option(
        envvar="METABONK_LLM_API_KEY", show_envvar=True,
        help="Require 'Authorization: Bearer KEY' (needed to listen beyond loopback; prefer the env var).")] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(
        help="llama: a web origin allowed to call the server from a browser (repeat; default: none).")] = None,
    max_body_bytes: Annotated[int, typer.Option(help="llama: largest request body accepted.")] = 1 << 20,
) -> None:
    """Serve an OpenAI-compatible chat endpoint for System 2 (use it with --llm-url http://HOST:PORT/v1).
    The client sends $METABONK_LLM_API_KEY as its key; docs/security.md says what the server exposes."""
    import ipaddress
    import os
    import shlex

    from metabonk.planner.serve import check_backend, llama_server_command, run_server, vllm_command

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not api_key:
        raise MetabonkError(f"--host {host} is reachable from other machines: set an API key "
                            f"(METABONK_LLM_API_KEY=... or --api-key) or keep --host 127.0.0.1")
    env = dict(os.environ)
    env.pop("METABONK_LLM_API_KEY", None)
    if api_key:
        env["METABONK_LLM_API_KEY" if backend == "llama" else "VLLM_API_KEY"] = api_key
    if backend == "llama":
        if quantization or speculative_model:
            raise MetabonkError("--quantization/--speculative-model apply to --backend vllm only")
        cmd = llama_server_command(host=host, port=port, model=model, n_threads=threads,
                                   cors_origins=cors_origin, max_body_bytes=max_body_bytes)
    elif backend == "vllm":
        cmd = vllm_command(
            model or "", host=host, port=port, quantization=quantization, speculative_model=speculative_model
        )
    else:
        raise MetabonkError(f"unknown backend '{backend}' (llama, vllm)")
    if dry_run:
        typer.echo(shlex.join(cmd))
        return
    check_backend(backend)
    typer.echo(f"serving on http://{host}:{port}/v1{' (API key required)' if api_key else ''} : "
               f"{shlex.join(cmd)}", err=True)
    code = run_server(cmd, env=env)
    if code not in (0, 130, -2):
        raise MetabonkError(f"{backend} server exited with code {code}")


@playbook_app.command("show")
def playbook_show(
    version: Annotated[int | None, typer.Argument(help="Version (default: the newest).")] = None,
    db: Annotated[Path, typer.Option(help=DB_HELP)] = DEFAULT_DB,
) -> None:
    """Print the playbook's entries at a version."""
    from rich.console import Console
    from rich.table import Table

    store = _open(db)
    v = store.get(store.head if version is None else version)
    table = Table(title=f"playbook {db} v{v.version} ({v.reason})")
    for col in ("id", "+", "-", "tags", "text"):
        table.add_column(col)
    for e in v.entries:
        table.add_row(e.id, str(e.helpful), str(e.harmful), ",".join(e.tags), e.text)
    Console().print(table)


@playbook_app.command("history")
def playbook_history(db: Annotated[Path, typer.Option(help=DB_HELP)] = DEFAULT_DB) -> None:
    """List every version with its time, size and reason."""
    store = _open(db)
    for v in store.history():
        typer.echo(f"v{v.version}\t{v.created_utc}\t{len(v.entries)} entries\t{v.reason}")


@playbook_app.command("diff")
def playbook_diff(a: int, b: int, db: Annotated[Path, typer.Option(help=DB_HELP)] = DEFAULT_DB) -> None:
    """Unified diff of the playbook between versions A and B."""
    typer.echo(_open(db).diff(a, b) or f"v{a} and v{b} are identical")


@playbook_app.command("revert")
def playbook_revert(
    version: int,
    db: Annotated[Path, typer.Option(help=DB_HELP)] = DEFAULT_DB,
    reason: Annotated[str | None, typer.Option(help="Why (stored with the new version).")] = None,
) -> None:
    """Restore version V's content as a new version (history is kept)."""
    store = _open(db, write=True)
    head = store.head
    new = store.revert(version, reason)
    typer.echo(f"v{head} already equals v{version}" if new == head else f"restored v{version} as v{new}")


@bench_app.command("planner")
def bench_planner(
    seeds: Annotated[int, typer.Option(help="Seeds per condition (>= 16 for the report).")] = 16,
    rounds: Annotated[int, typer.Option(help="Reflection rounds of the playbook conditions.")] = 3,
    llm_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible endpoint; default: embedded SmolLM2.")
    ] = None,
    llm_model: Annotated[str, typer.Option(help="Model name sent to --llm-url.")] = "default",
    samples: Annotated[int, typer.Option(help="Self-consistency votes per card choice.")] = 3,
    threads: Annotated[
        int, typer.Option(help="CPU threads of the embedded model (1 is steadier on a busy 2-core machine).")
    ] = 1,
    stage_s: Annotated[
        float | None, typer.Option(help="Stage length in game seconds (default: Arena's).")
    ] = None,
    no_llm: Annotated[bool, typer.Option("--no-llm", help="Skip the LLM conditions.")] = False,
    out: Annotated[Path, typer.Option(help="Result JSON.")] = Path(
        "benchmarks/results/eval-planner-arena.json"
    ),
    logdir: Annotated[Path | None, typer.Option(help="TensorBoard dir.")] = Path("runs/planner/bench"),
) -> None:
    """Card choices by System 2 (LLM + playbook, rule route, reflection rounds) vs random cards."""
    from metabonk.planner.experiment import ExperimentConfig, print_report, run_experiment

    cfg = ExperimentConfig(
        seeds=seeds,
        rounds=rounds,
        llm_url=llm_url,
        llm_model=llm_model,
        samples=samples,
        n_threads=threads,
        stage_s=stage_s,
        use_llm=not no_llm,
        logdir=str(logdir) if logdir else None,
    )
    figures = run_experiment(cfg, out)
    print_report(figures)


def _open(db: Path, write: bool = False):
    """The playbook at `db`: read-only for the reading verbs (they never create or change a file)."""
    from metabonk.planner.playbook import PlaybookStore

    if not Path(db).is_file():
        raise MetabonkError(f"no playbook database at {db} (pass --db PATH)")
    return PlaybookStore(db, read_only=not write)


@bench_app.command("planner-latency")
def bench_planner_latency(
    decisions: Annotated[int, typer.Option(help="Card decisions (and as many intent decisions).")] = 30,
    samples: Annotated[int, typer.Option(help="Self-consistency votes per card choice.")] = 1,
    threads: Annotated[int, typer.Option(help="CPU threads of the embedded model.")] = 2,
    llm_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint; default: embedded SmolLM2.")] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Result JSON.")] = None,
) -> None:
    """System 2 decision latency (p50/p99) and the share of raw LLM answers that pass schema validation."""
    from metabonk.bench.planner_latency import run_latency_bench

    if decisions < 1:
        raise MetabonkError("--decisions must be at least 1")
    run_latency_bench(decisions=decisions, samples=samples, threads=threads, llm_url=llm_url, json_path=json_path)
