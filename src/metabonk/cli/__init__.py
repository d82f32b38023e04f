"""The `metabonk` command line: one verb per user task; user mistakes print one line and exit non-zero."""

from __future__ import annotations

import sys

from metabonk.cli import (  # noqa: F401  (importing registers each area's verbs)
    arena_cmds,
    bridge_cmds,
    data_cmds,
    demo_cmds,
    hive_cmds,
    latent_cmds,
    planner_cmds,
    policy_cmds,
    quant_cmds,
    serve_cmds,
    world_cmds,
)
from metabonk.cli.app import app
from metabonk.common.errors import MetabonkError


def main() -> None:
    """Entry point: run the typer app, turning MetabonkError into a one-line message and exit code."""
    try:
        app(standalone_mode=False)
    except MetabonkError as e:
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(1)
        raise
