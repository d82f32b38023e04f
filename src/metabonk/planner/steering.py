"""Representation steering (RepE) of the planner: a cautious ↔ aggressive direction per layer from
contrastive prompts, saved with safetensors and applied in llama.cpp as a control vector.

The direction is the mean difference of last-token hidden states (aggressive minus cautious) of the same
GGUF loaded with transformers (`gguf_file=`; needs the `gguf` and `accelerate` packages). Row il-1 of the
vector is added to layer il's output, the layout `llama_set_adapter_cvec` expects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from metabonk.common.errors import MetabonkError
from metabonk.common.intents import INTENTS

AGGRESSIVE = ("fight_boss", "collect_xp")
"""Intents counted as aggressive; the cautious ones are CAUTIOUS (explore counts as neither)."""
CAUTIOUS = ("flee", "heal", "kite")
PERSONAS = {
    "aggressive": "You are a bold, aggressive player: you attack, chase and take risks to win fast.",
    "cautious": "You are a careful, cautious player: you avoid danger, retreat and protect your health.",
}


def contrast_prompts(n: int, seed: int = 0) -> dict[str, list[str]]:
    """Pairs of prompts that differ only in the persona sentence, over `n` game states."""
    from metabonk.bench.planner_latency import _summaries

    states = [s.text() for s in _summaries(n, seed)]
    return {k: [f"{p} State: {st}. What do you do now?" for st in states] for k, p in PERSONAS.items()}


def hidden_direction(gguf: Path, n_prompts: int = 16, seed: int = 0) -> np.ndarray:
    """[n_layer, n_embd] mean(aggressive) - mean(cautious) of the last-token output of each layer."""
    import importlib.util

    for pkg in ("gguf", "accelerate"):
        if importlib.util.find_spec(pkg) is None:
            raise MetabonkError(f"the '{pkg}' package is needed to read GGUF weights with transformers "
                                f"(pip install {pkg})")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    model.eval()
    means = {}
    with torch.no_grad():
        for side, prompts in contrast_prompts(n_prompts, seed).items():
            acc = None
            for p in prompts:
                ids = tok(p, return_tensors="pt")
                hs = model(**ids, output_hidden_states=True).hidden_states  # embeddings + one per layer
                last = torch.stack([h[0, -1] for h in hs[1:]])  # [n_layer, n_embd]
                acc = last if acc is None else acc + last
            assert acc is not None
            means[side] = acc / len(prompts)
    return (means["aggressive"] - means["cautious"]).numpy().astype(np.float32)


def save_vector(path: Path, vector: np.ndarray, meta: dict[str, str]) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"direction": np.ascontiguousarray(vector, dtype=np.float32)}, str(path), metadata=meta)


def load_vector(path: Path) -> np.ndarray:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not path.is_file():
        raise MetabonkError(f"no steering vector at {path} (make one with `metabonk planner steer`)")
    try:
        return load_file(str(path))["direction"]
    except (SafetensorError, KeyError, OSError) as e:
        raise MetabonkError(f"{path} is not a steering vector: {e}") from e


def unit_rows(vector: np.ndarray) -> np.ndarray:
    """Each layer's direction scaled to unit norm (strength is then in hidden-state units per layer)."""
    return vector / np.maximum(np.linalg.norm(vector, axis=1, keepdims=True), 1e-6)


def measure_shift(client: Any, vector: np.ndarray, strengths: list[float], n_states: int = 24,
                  seed: int = 1, layers: tuple[int, int] | None = None) -> dict[str, Any]:
    """At each strength, the planner's intent (scored choice) on a fixed prompt set: the share of aggressive
    intents (fight_boss, collect_xp) vs cautious ones (flee, heal, kite) and the mean log-odds of the two."""
    from metabonk.bench.planner_latency import _summaries
    from metabonk.planner.planner import SYSTEM_PROMPT

    states = _summaries(n_states, seed)
    out: dict[str, Any] = {}
    agg = [INTENTS.index(k) for k in AGGRESSIVE]
    cau = [INTENTS.index(k) for k in CAUTIOUS]
    for s in strengths:
        client.set_control_vector(vector, s, layers)
        picks, margin = [], []
        for st in states:
            ask = f"State: {st.text()}\nIntents: {', '.join(INTENTS)}.\nWhich intent should the player follow now?"
            i, lp = client.choose([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": ask}],
                                  "intent", list(INTENTS))
            picks.append(INTENTS[i])
            margin.append(float(np.logaddexp.reduce([lp[k] for k in agg]) - np.logaddexp.reduce([lp[k] for k in cau])))
        out[f"{s:g}"] = {
            "aggressive_share": sum(p in AGGRESSIVE for p in picks) / len(picks),
            "cautious_share": sum(p in CAUTIOUS for p in picks) / len(picks),
            "aggressive_minus_cautious_logodds": float(np.mean(margin)),
            "picks": {k: picks.count(k) for k in INTENTS if k in picks},
        }
    client.set_control_vector(None)
    return out
