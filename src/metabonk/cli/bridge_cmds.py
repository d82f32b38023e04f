"""CLI verbs of the bridge area: `metabonk serve-env` (an env as bridge game) and `metabonk bridge-check`."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from metabonk.cli.app import app, bench_app
from metabonk.common.errors import MetabonkError


@app.command("serve-env")
def serve_env_cmd(
    env: Annotated[str, typer.Argument(help="Env spec to serve: arena, ale:Pong, crafter.")],
    port: Annotated[int, typer.Option(help="TCP port to listen on (0 = any free port, printed at start).")],
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0: all).")] = "127.0.0.1",
    size: Annotated[int, typer.Option(help="Frame size the env renders (clients resize to their own).")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of each connection's env when the agent sends none.")] = 0,
    frame_encoding: Annotated[str, typer.Option(help="png | raw_rgb | jpeg (jpeg is lossy).")] = "png",
    max_clients: Annotated[int, typer.Option(help="Agents served at once (one env each).")] = 8,
    idle_timeout: Annotated[float, typer.Option(help="Close a connection silent this many seconds.")] = 300.0,
    device: Annotated[str, typer.Option(help="Device of the served env (Arena): cpu | cuda.")] = "cpu",
) -> None:
    """Serve a MetaBonk env over the bridge protocol (docs/bridge.md): the reference peer for game plugins."""
    import logging

    from rich.logging import RichHandler

    from metabonk.common.logging import console
    from metabonk.envs import make_env
    from metabonk.envs.bridge.schema import FRAME_ENCODINGS
    from metabonk.envs.bridge.server import BridgeServer

    if frame_encoding not in FRAME_ENCODINGS:
        raise MetabonkError(f"unknown frame encoding '{frame_encoding}' "
                            f"(choose from {', '.join(FRAME_ENCODINGS)})")
    if env.startswith("bridge://"):
        raise MetabonkError("serve-env serves a local env; a bridge:// spec would only relay another game")
    if not 0 <= port < 65536:
        raise MetabonkError(f"port must be in 0..65535, got {port}")
    make_env(env, num_envs=1, size=size, seed=seed, device=device).close()  # fail now on a bad spec/size

    def factory():  # type: ignore[no-untyped-def]
        return make_env(env, num_envs=1, size=size, seed=seed, device=device)

    handler = RichHandler(console=console, show_path=False)
    logger = logging.getLogger("metabonk.bridge")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    server = BridgeServer(factory, host=host, port=port, name=env, frame_encoding=frame_encoding,
                          max_clients=max_clients, idle_timeout=idle_timeout).bind()
    bound_host, bound_port = server.address
    # Ctrl-C and SIGTERM stop the server cleanly even when a parent process left SIGINT ignored (a child
    # inherits SIG_IGN, and Python then installs no KeyboardInterrupt handler of its own).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:  # the address line inside the try: a Ctrl-C right after it (a waiting client sends one) is caught too
        print(f"serving {env} on bridge://{bound_host}:{bound_port}", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("bridge: stopping")
    finally:
        server.stop()
        logger.removeHandler(handler)


@app.command("bridge-check")
def bridge_check_cmd(
    address: Annotated[str, typer.Argument(help="HOST:PORT of a game speaking the bridge protocol.")],
    steps: Annotated[int, typer.Option(help="Random-action steps to run.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed sent with the first reset and for the random actions.")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each reply.")] = 10.0,
) -> None:
    """Check a game plugin against the protocol: handshake, reset, random steps, autoreset, close."""
    from metabonk.envs.bridge.check import run_check

    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise MetabonkError(f"expected HOST:PORT, got '{address}'")
    run_check(host, int(port), steps=steps, seed=seed, timeout=timeout)


@bench_app.command("bridge")
def bench_bridge_cmd(
    env: Annotated[list[str] | None, typer.Option(help="Env(s) served and played locally for reference "
                                                     "(default: arena and ale:Pong).")] = None,
    size: Annotated[int, typer.Option(help="Frame size.")] = 64,
    steps: Annotated[int, typer.Option(help="Steps per timed run.")] = 200,
    repeats: Annotated[int, typer.Option(help="Timed runs (the median is reported).")] = 3,
    json_path: Annotated[Path | None, typer.Option("--json", help="Result file (default "
                                                   "benchmarks/results/bridge-<device>.json).")] = None,
) -> None:
    """Bridge cost: steps/s through `serve-env` (another process) vs local play, per frame encoding."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from metabonk.bench.bridge import run_bridge_bench
    from metabonk.common.device import device_label
    from metabonk.common.results import write_result

    figures = {spec: run_bridge_bench(env_spec=spec, size=size, steps=steps, repeats=repeats)
               for spec in (env or ["arena", "ale:Pong"])}
    table = Table(title=f"bridge (serve-env process, loopback TCP) vs local, one env, {size}x{size}")
    for col in ("env", "mode", "steps/s", "ratio to local", "overhead ms/step", "p50 ms", "p99 ms",
                "frame bytes"):
        table.add_column(col)
    for spec, fig in figures.items():
        table.add_row(spec, "local", f"{fig['local_steps_per_s']:.0f}", "1.00", "0",
                      f"{fig['local_p50_ms']:.2f}", "", "")
        for enc in ("raw_rgb", "png", "jpeg"):
            f = fig[enc]
            table.add_row(spec, f"bridge {enc}", f"{f['steps_per_s']:.0f}", f"{f['ratio_to_local']:.2f}",
                          f"{f['overhead_ms_per_step']:.2f}", f"{f['p50_ms']:.2f}", f"{f['p99_ms']:.2f}",
                          str(f["frame_bytes"]))
    Console(soft_wrap=True).print(table)
    device = torch.device("cpu")
    out = json_path or Path("benchmarks/results") / f"bridge-{device_label(device)}.json"
    write_result(out, figures, device)
    Console().print(f"wrote {out}")
