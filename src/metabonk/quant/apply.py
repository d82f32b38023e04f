"""Quantize a model in place with torchao, layer by layer, and describe what was done as a JSON-able recipe."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from metabonk.common.errors import MetabonkError
from metabonk.quant.formats import Recipe, check_runnable, layer_config, quantizable


def torchao_version() -> str:
    import torchao

    return str(torchao.__version__)


def quantize_model(model: nn.Module, recipe: Recipe, keep: Iterable[str] = (),
                   device: torch.device | None = None) -> dict[str, Any]:
    """Quantize every Linear/Conv2d of `model` that the format covers, except the layers named in `keep`
    (they stay in full precision: hybrid precision). Returns the recipe document stored in config.json."""
    from torchao.quantization import quantize_

    check_runnable(recipe, device or torch.device("cpu"))
    keep = set(keep)
    unknown = keep - {n for n, _ in quantizable(model)}
    if unknown:
        raise MetabonkError(f"--keep names layers the model does not have: {', '.join(sorted(unknown))}")
    layers: dict[str, str] = {}
    kept: dict[str, str] = {}
    for name, module in quantizable(model):
        if name in keep:
            kept[name] = "kept in full precision (hybrid)"
            continue
        choice = layer_config(recipe, module)
        if choice is None:
            kept[name] = f"no torchao {recipe.name} path for {type(module).__name__} {tuple(module.weight.shape)}"
            continue
        config, label = choice
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchao's deprecation notes about its own internals
            quantize_(module, config, filter_fn=lambda m, fqn: True)
        layers[name] = label
    if not layers:
        raise MetabonkError(f"{recipe.name}: no layer of this model can be quantized in this format")
    return {"format": recipe.format, "weight_only": recipe.weight_only, "name": recipe.name,
            "torchao": torchao_version(), "layers": layers, "kept": kept, **weight_fraction(model, layers)}


def weight_fraction(model: nn.Module, layers: dict[str, str]) -> dict[str, Any]:
    """How many of the model's weights sit in quantized layers (the rest run in full precision)."""
    mods = dict(model.named_modules())
    quantized = sum(_numel(mods[n].weight) for n in layers)
    total = sum(p.numel() if not _is_subclass(p) else _numel(p) for p in model.parameters())
    return {"quantized_weights": int(quantized), "total_weights": int(total),
            "quantized_fraction": quantized / max(total, 1)}


def _is_subclass(t: torch.Tensor) -> bool:
    return type(t) not in (torch.Tensor, nn.Parameter)


def _numel(t: torch.Tensor) -> int:
    return int(torch.Size(t.shape).numel())
