"""Episodes on disk: the store, recording from an env, video ingest and export."""

from metabonk.data.store import EpisodeStore

__all__ = ["EpisodeStore"]
