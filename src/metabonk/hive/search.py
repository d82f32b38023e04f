"""Choosing merge coefficients on the validation seeds: a global lambda grid and a per-layer lambda search.

Task arithmetic and TIES pick lambda on held-out validation data (Ilharco et al. 2023 sweep 0..1+; Yadav
et al. 2023 likewise); layer-wise AdaMerging (Yang et al. 2024) gives each layer its own lambda. Here the
coefficients are chosen by the hive's own vote score on the validation seeds, so a run must score what it
promotes on other seeds (`HiveConfig.test_seed`) before it claims a target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from metabonk.hive.merge import SCALED, MergeOptions, StateDict, merge, tensor_groups

Evaluator = Callable[[dict[str, StateDict]], dict[str, float]]
"""Candidate name -> state dict in, candidate name -> vote score (mean normalised, validation seeds) out."""


def candidate_name(method: str, scale: float | None = None) -> str:
    """`merge:ties@1.5` for a lambda-scaled method, `merge:soup` for the others."""
    return f"merge:{method}@{scale:g}" if method in SCALED and scale is not None else f"merge:{method}"


def grid_candidates(base: StateDict, models: list[StateDict], methods: list[str], scales: list[float],
                    opt: MergeOptions) -> dict[str, StateDict]:
    """Every method; each lambda-scaled one at every lambda of `scales`."""
    out: dict[str, StateDict] = {}
    for m in methods:
        for s in scales if m in SCALED else [None]:
            out[candidate_name(m, s)] = merge(m, base, models, opt if s is None else replace(opt, scale=s))
    return out


def layer_search(base: StateDict, models: list[StateDict], evaluate: Evaluator, grid: list[float], sweeps: int,
                 start: float = 1.0, opt: MergeOptions | None = None, method: str = "task-arith",
                 ) -> dict[str, Any]:
    """Coordinate ascent over per-layer lambdas of `method`: from lambda = `start` everywhere, each sweep
    tries every value of `grid` for one layer (owner module) at a time, the others fixed, and keeps a value
    only if it raises the vote score. Returns the lambdas, the merged state, its validation score and how
    many candidates were scored (the selection's size, for the reader of a held-out figure)."""
    o = opt or MergeOptions()
    lam = dict.fromkeys(tensor_groups(base), start)

    def merged(layers: dict[str, float]) -> StateDict:
        return merge(method, base, models, replace(o, scale=start, layer_scales=dict(layers)))

    state = merged(lam)
    best = evaluate({"current": state})["current"]
    scored = 1
    for _ in range(sweeps):
        moved = False
        for g in list(lam):
            trial = {f"{g}={v:g}": {**lam, g: v} for v in grid if v != lam[g]}
            states = {name: merged(layers) for name, layers in trial.items()}
            scores = evaluate(states)
            scored += len(states)
            name = max(scores, key=lambda n: scores[n])
            if scores[name] > best:
                lam, best, state, moved = trial[name], scores[name], states[name], True
        if not moved:
            break
    return {"layer_scales": lam, "state": state, "validation_vote": best, "candidates_scored": scored}
