"""CLI verbs of the planner area (registered on the shared typer app)."""

from __future__ import annotations

from metabonk.cli.app import app  # noqa: F401
