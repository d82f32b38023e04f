"""Shared by the hardening tests: run the real `metabonk` entry point in-process and capture what a user sees."""

from __future__ import annotations

import contextlib
import io
import sys


def run_cli(args: list[str]) -> tuple[int, str]:
    """(exit code, stdout + stderr) of `metabonk ARGS` through `metabonk.cli.main` (its error handling included)."""
    from metabonk.cli import main

    out = io.StringIO()
    old_argv = sys.argv
    sys.argv = ["metabonk", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = old_argv
    return code, out.getvalue()


def assert_one_line_error(code: int, text: str, contains: str = "") -> None:
    """A user error: non-zero exit, no traceback, and (when given) the expected words."""
    assert code != 0, text
    assert "Traceback" not in text, text
    if contains:
        assert contains in text, text



