"""The `metabonk` command line: one verb per user task; user mistakes print one line and exit non-zero."""

from __future__ import annotations

import sys

from metabonk.cli import (  # noqa: F401  (importing registers each area's verbs)
    agent_cmds,
    arena_cmds,
    baseline_cmds,
    bridge_cmds,
    data_cmds,
    demo_cmds,
    hive_cmds,
    intent_cmds,
    latent_cmds,
    planner_cmds,
    policy_cmds,
    quant_cmds,
    serve_cmds,
    world_cmds,
)
from metabonk.cli.app import app
from metabonk.cli.limits import apply_limits
from metabonk.common.errors import MetabonkError

apply_limits(app)


def _usage_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(usage-error types, abort types) of whichever click typer runs on: typer >= 0.26 bundles its own
    (`typer._click`, whose errors derive from typer.TyperException), older typer uses the click package."""
    import typer

    usage: list[type[BaseException]] = [typer.TyperException] if hasattr(typer, "TyperException") else []
    aborts: list[type[BaseException]] = [typer.Abort]
    try:
        import click

        usage.append(click.exceptions.ClickException)
        aborts.append(click.exceptions.Abort)
    except ImportError:
        pass
    return tuple(usage), tuple(aborts)


def _fail(message: str, code: int) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    sys.exit(code)


def main() -> None:
    """Entry point: run the typer app, turning MetabonkError, usage errors and OS errors (disk full, read-only,
    permission) into a one-line message and a non-zero exit code. METABONK_DEBUG=1 shows tracebacks."""
    import os

    usage, aborts = _usage_errors()
    try:
        code = app(prog_name="metabonk", standalone_mode=False)
    except MetabonkError as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except usage as e:
        show = getattr(e, "show", None)
        if show is None:
            _fail(str(e), 2)
        show()
        sys.exit(getattr(e, "exit_code", 2) or 2)
    except aborts:
        sys.exit(1)
    except OSError as e:
        if os.environ.get("METABONK_DEBUG"):
            raise
        _fail(f"{e.strerror or e}: {e.filename}" if e.filename else str(e), 1)
    if isinstance(code, int) and code:
        sys.exit(code)
