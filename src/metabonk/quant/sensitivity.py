"""Hybrid precision: the output error of each layer quantized alone, and the layers kept in full precision so
that the whole quantized model stays under a drift budget.

Choice: if every layer quantized fits the budget, none is kept. Otherwise (greedy, cheapest first) layers are
sorted by their own error and quantized in that order while the sum of their errors stays within the budget; the
sum is only an estimate (errors of different layers partly cancel or add up), so the joint error of the mix is
measured, and more of the most sensitive layers are kept until the measured error fits. The figure reported is
the measured one.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from metabonk.quant.apply import quantize_model
from metabonk.quant.formats import Recipe, layer_config, quantizable
from metabonk.quant.models import Rollout, probe_output, relative_error


def layer_errors(model: nn.Module, kind: str, recipe: Recipe, probe: Rollout,
                 device: torch.device) -> list[dict[str, Any]]:
    """One row per quantizable layer: its name, weight count and the probe's relative error with that layer
    alone quantized (rows sorted from the least to the most sensitive)."""
    ref = probe_output(model, kind, probe)
    names = [n for n, m in quantizable(model) if layer_config(recipe, m) is not None]
    rows = []
    for name in names:
        trial = copy.deepcopy(model)
        others = [n for n, _ in quantizable(trial) if n != name]
        quantize_model(trial, recipe, keep=others, device=device)
        weights = int(dict(trial.named_modules())[name].weight.shape.numel())
        rows.append({"layer": name, "weights": weights, "error": relative_error(probe_output(trial, kind, probe), ref)})
    return sorted(rows, key=lambda r: r["error"])


def choose_kept(rows: list[dict[str, Any]], budget: float) -> list[str]:
    """Layers to keep in full precision: all but the cheapest ones whose summed error fits in `budget`."""
    total, kept = 0.0, []
    for r in rows:
        if total + r["error"] <= budget:
            total += r["error"]
        else:
            kept.append(r["layer"])
    return kept


def hybrid_report(model: nn.Module, kind: str, recipe: Recipe, probe: Rollout, budget: float,
                  device: torch.device) -> dict[str, Any]:
    """Per-layer sensitivity, the kept layers under `budget` and the measured joint error of that mix.

    When quantizing every layer already fits the budget nothing is kept (errors of different layers can cancel:
    the summed estimate is then too pessimistic). Otherwise the summed-error choice is measured and, while the
    measured error is still over budget, the most sensitive layer still quantized is kept too."""
    rows = layer_errors(model, kind, recipe, probe, device)
    ref = probe_output(model, kind, probe)

    def measured(kept: list[str]) -> float:
        trial = copy.deepcopy(model)
        quantize_model(trial, recipe, keep=kept, device=device)
        return relative_error(probe_output(trial, kind, probe), ref)

    full = measured([])
    kept = [] if full <= budget else choose_kept(rows, budget)
    joint = full if not kept else measured(kept)
    by_sensitivity = [r["layer"] for r in reversed(rows)]
    while joint > budget and len(kept) < len(rows) - 1:
        kept.append(next(n for n in by_sensitivity if n not in kept))
        joint = measured(kept)
    return {"budget": budget, "layers": rows, "kept": kept, "joint_error": joint, "all_layers_error": full,
            "met_budget": joint <= budget}
