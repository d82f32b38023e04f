"""Settings of one orchestrator instance: where it stores things, who may read, how big a request may be."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20


@dataclass
class ServeConfig:
    """What `metabonk serve` was started with; every path the service writes lives under `data`."""

    data: Path = Path("runs/orchestrator")
    """Folder of the episode stores, models, run artifacts, the playbook and (by default) the SQLite file."""
    db_url: str | None = None
    """SQLAlchemy URL (`postgresql+psycopg://...`); None: SQLite at DATA/orchestrator.sqlite."""
    open_reads: bool = False
    """Serve reads to any client; otherwise reads need loopback or a token."""
    stale_after_s: float = 15.0
    """A worker whose last heartbeat is older than this is marked stale."""
    max_json_bytes: int = 1 * MiB
    max_episode_bytes: int = 256 * MiB
    max_model_bytes: int = 2048 * MiB
    max_artifact_bytes: int = 64 * MiB
    max_frame_bytes: int = 2 * MiB

    @property
    def url(self) -> str:
        return self.db_url or f"sqlite:///{(self.data / 'orchestrator.sqlite').resolve()}"

    @property
    def tmp(self) -> Path:
        """Uploads in flight; emptied at start-up (a killed upload leaves its part file only here)."""
        return self.data / "tmp"
