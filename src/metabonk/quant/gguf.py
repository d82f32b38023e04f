"""System 2 at other llama.cpp quantization levels: requantize the bundled GGUF with llama.cpp's own quantizer
(`llama_cpp.llama_model_quantize`), and an embedded client that can decode with prompt-lookup speculation.

The bundled SmolLM2-135M is already Q4_1, so every level here is made *from Q4_1* (llama.cpp's
`allow_requantize`): a higher level (Q8_0) cannot recover what Q4_1 lost — it changes the kernels and the speed,
not the quality — and a lower one stacks its error on Q4_1's. Decision agreement is therefore measured against
the bundled Q4_1, the model System 2 ships with. F32 (and, near enough, F16) hold the Q4_1 weights dequantized: their
decisions are those of the shipped weights in exact arithmetic, which the Q4_1 kernels (8-bit activations) do not
always make.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from metabonk.common.errors import MetabonkError
from metabonk.planner.embedded import EmbeddedClient, find_gguf, llama_available

LEVELS = ("F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K")


def ftype(level: str) -> int:
    import llama_cpp

    name = "LLAMA_FTYPE_ALL_F32" if level == "F32" else f"LLAMA_FTYPE_MOSTLY_{level}"
    value = getattr(llama_cpp, name, None)
    if level not in LEVELS or value is None:
        raise MetabonkError(f"unknown llama.cpp level '{level}' (choose {', '.join(LEVELS)})")
    return int(value)


def requantize(level: str, out_dir: str | Path, source: str | Path | None = None, threads: int = 2) -> Path:
    """`source` (default: the bundled GGUF) at `level`, written to out_dir/<stem>.<level>.gguf (reused when it
    exists; written to a temp name first, then renamed)."""
    if not llama_available():
        raise MetabonkError("requantizing needs llama-cpp-python: pip install 'metabonk[llm]'")
    import llama_cpp

    src = find_gguf(str(source) if source else None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = src.name.removesuffix(".gguf").split(".")[0]
    dst = out_dir / f"{stem}.{level}.gguf"
    if dst.is_file():
        return dst
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype(level)
    params.nthread = threads
    params.allow_requantize = True  # the bundled model is already Q4_1
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
    if rc != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise MetabonkError(f"llama.cpp could not quantize {src.name} to {level} (code {rc})")
    tmp.replace(dst)
    return dst


class LookupClient(EmbeddedClient):
    """The embedded client on any GGUF, optionally decoding with llama-cpp-python's prompt-lookup drafts
    (`LlamaPromptLookupDecoding`: n-grams of the prompt proposed as the next tokens, verified in one batch)."""

    def __init__(self, model_path: str | Path, n_threads: int = 2, n_ctx: int = 2048, seed: int = 0,
                 lookup_tokens: int = 0, ngram: int = 2) -> None:
        # not super().__init__: that builds its Llama without a draft model; the attributes chat() reads are set here
        if not llama_available():
            raise MetabonkError("llama-cpp-python is not installed: pip install 'metabonk[llm]'")
        from llama_cpp import Llama
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        self.model_path = find_gguf(str(model_path))
        draft = LlamaPromptLookupDecoding(max_ngram_size=ngram, num_pred_tokens=lookup_tokens) \
            if lookup_tokens > 0 else None
        self._llm = Llama(model_path=str(self.model_path), n_ctx=n_ctx, n_threads=n_threads,
                          n_threads_batch=n_threads, seed=seed, verbose=False, draft_model=draft)
        self._lock = threading.Lock()
        self.name = f"embedded:{self.model_path.name}" + (f"+lookup{lookup_tokens}" if draft else "")


def decisions(client: Any, n: int, seed: int = 0) -> dict[str, Any]:
    """`n` card and `n` intent decisions (greedy, one sample) on the seeded summaries of `bench planner-latency`:
    the chosen names in order and each decision's latency."""
    import numpy as np

    from metabonk.bench.planner_latency import _summaries
    from metabonk.envs.arena import UPGRADES
    from metabonk.planner.planner import Planner, PlannerConfig

    planner = Planner(client, config=PlannerConfig(samples=1, seed=seed))
    rng = np.random.default_rng(seed + 1)
    planner.choose_intent(_summaries(1, seed)[0])  # warm-up: prompt cache, first-call allocation
    chosen, latency, sources = [], [], []
    for s in _summaries(n, seed):
        options = [UPGRADES[int(i)] for i in rng.choice(len(UPGRADES), size=3, replace=False)]
        for d in (planner.choose_card(s, options), planner.choose_intent(s)):
            chosen.append(d.value)
            latency.append(d.latency_s)
            sources.append(d.source)
    return {"chosen": chosen, "latency_s": latency, "llm_fraction": sources.count("llm") / len(sources)}
