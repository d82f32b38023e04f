"""CLI verbs of the bridge area (registered on the shared typer app)."""

from __future__ import annotations

from metabonk.cli.app import app  # noqa: F401
