"""CLI verbs of the planner area: `serve-llm`, `playbook show|history|diff|revert`, `bench planner`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
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


MODEL_HELP = "Embedded model: smollm2 | gemma3 | a GGUF path (default: smollm2, see docs/planner.md)."
DECODE_HELP = "score (rank the schema's options in one prompt evaluation) | generate (grammar-constrained JSON)."


def _check_model(model: str | None, decode: str) -> None:
    from metabonk.planner.embedded import MODELS

    if model is not None and model not in MODELS and not Path(model).is_file():
        raise MetabonkError(f"--model must be one of {', '.join(MODELS)} or a GGUF file (got '{model}')")
    if decode not in ("score", "generate"):
        raise MetabonkError(f"--decode must be score or generate (got '{decode}')")


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
    model: Annotated[str | None, typer.Option(help=MODEL_HELP)] = None,
    decode: Annotated[str, typer.Option(help=DECODE_HELP)] = "score",
    out: Annotated[Path, typer.Option(help="Result JSON.")] = Path(
        "benchmarks/results/eval-planner-arena.json"
    ),
    logdir: Annotated[Path | None, typer.Option(help="TensorBoard dir.")] = Path("runs/planner/bench"),
) -> None:
    """Card choices by System 2 (LLM + playbook, rule route, reflection rounds) vs random cards."""
    from metabonk.planner.experiment import ExperimentConfig, print_report, run_experiment

    _check_model(model, decode)
    if seeds < 2:
        raise MetabonkError("--seeds must be at least 2")
    cfg = ExperimentConfig(
        model=model,
        decode=decode,
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
    llm_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint; default: embedded model.")] = None,
    model: Annotated[str | None, typer.Option(help=MODEL_HELP)] = None,
    decode: Annotated[str, typer.Option(help=DECODE_HELP)] = "score",
    in_game_s: Annotated[float, typer.Option(
        help="Also play this many seconds of real-time Arena without and with the async planner.")] = 0.0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Result JSON.")] = None,
) -> None:
    """System 2 decision latency (p50/p99), prefix-cache reuse, answer validity and (with --in-game-s) the
    latency in a running game with System 1's tick rate with and without the planner."""
    from metabonk.bench.planner_latency import run_latency_bench

    if decisions < 1:
        raise MetabonkError("--decisions must be at least 1")
    if in_game_s < 0:
        raise MetabonkError("--in-game-s must be >= 0")
    _check_model(model, decode)
    run_latency_bench(decisions=decisions, samples=samples, threads=threads, llm_url=llm_url, json_path=json_path,
                      model=model, decode=decode, in_game_s=in_game_s)


planner_app = typer.Typer(help="System 2 tools: representation steering.", no_args_is_help=True)
app.add_typer(planner_app, name="planner")


@planner_app.command("steer")
def planner_steer(
    model: Annotated[str | None, typer.Option(help=MODEL_HELP)] = None,
    strength: Annotated[float, typer.Option(help="Steering strength s: choices are measured at -s, 0, +s.")] = 4.0,
    prompts: Annotated[int, typer.Option(help="Contrastive prompt pairs for the direction.")] = 16,
    states: Annotated[int, typer.Option(help="Game states of the fixed evaluation prompt set.")] = 24,
    vector: Annotated[Path, typer.Option(help="Where the direction is saved (safetensors).")] = Path(
        "runs/planner/steer-aggressive.safetensors"),
    reuse: Annotated[bool, typer.Option("--reuse", help="Load --vector instead of computing it.")] = False,
    threads: Annotated[int, typer.Option(help="CPU threads of the embedded model.")] = 2,
    out: Annotated[Path, typer.Option(help="Result JSON.")] = Path("benchmarks/results/planner-steer-cpu.json"),
) -> None:
    """A cautious <-> aggressive steering direction (RepE) applied as a llama.cpp control vector, and how far it
    shifts the planner's intents on a fixed prompt set at strengths -s, 0, +s."""
    import time

    from metabonk.bench.planner_latency import load_average
    from metabonk.common.results import write_result
    from metabonk.planner.embedded import EmbeddedClient, find_gguf
    from metabonk.planner.steering import hidden_direction, load_vector, measure_shift, save_vector, unit_rows

    _check_model(model, "score")
    if strength <= 0 or prompts < 2 or states < 1:
        raise MetabonkError("--strength must be > 0, --prompts >= 2 and --states >= 1")
    gguf = find_gguf(model)
    t0 = time.perf_counter()
    if reuse:
        direction = load_vector(vector)
    else:
        direction = hidden_direction(gguf, n_prompts=prompts)
        save_vector(vector, direction, {"model": gguf.name, "prompts": str(prompts), "sign": "aggressive-cautious"})
    client = EmbeddedClient(str(gguf), n_threads=threads)
    if direction.shape != (client.n_layer, client.n_embd):
        raise MetabonkError(f"{vector} has shape {direction.shape}, {gguf.name} needs "
                            f"({client.n_layer}, {client.n_embd})")
    shift = measure_shift(client, unit_rows(direction), [-strength, 0.0, strength], n_states=states)
    figures = {"model": gguf.name, "vector": str(vector), "prompts": prompts, "states": states,
               "strength": strength, "strength_unit": "per-layer unit direction x strength",
               "direction_norm_per_layer": [float(x) for x in np.linalg.norm(direction, axis=1)],
               "by_strength": shift, "wall_s": time.perf_counter() - t0, "load_average": load_average()}
    write_result(out, figures)
    for s, r in shift.items():
        typer.echo(f"strength {s:>6}: aggressive {r['aggressive_share']:.0%}  cautious {r['cautious_share']:.0%}  "
                   f"log-odds {r['aggressive_minus_cautious_logodds']:+.2f}  {r['picks']}")
