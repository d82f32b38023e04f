"""Quantized checkpoints: the same directory layout as every MetaBonk checkpoint, read by the normal `load`.

`model.safetensors` holds plain tensors only: each torchao tensor subclass is flattened by torchao's safetensors
support into its int/fp8/fp4 data and scales, and its attributes go to the safetensors header as JSON (torchao
rebuilds only an allow-list of its own classes from it; no pickle anywhere). `config.json` keeps the model's kind
and config and gains a "quant" section: the recipe (format, each layer's torchao config, the layers kept in full
precision). Loading rebuilds the fp32 model from its config and assigns the torchao tensors, so the loaded model
runs the same quantized kernels, bit for bit, as the one that was saved; nothing is dequantized on load.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from metabonk.common.checkpoint import CONFIG, WEIGHTS, _AllocationGuard, _atomic_dir_write, config_to_dict
from metabonk.common.errors import MetabonkError
from metabonk.quant.formats import Recipe, check_runnable

PREFIX = "model."


def save_quantized(path: str | Path, model: nn.Module, config: Any, kind: str, quant: dict[str, Any],
                   meta: dict[str, Any] | None = None) -> Path:
    """Write a quantized `model` (torchao tensors inside) as a checkpoint directory, atomically."""
    from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict

    path = Path(path)
    # torchao's flattening splits every name at its last dot; a root prefix gives top-level tensors one too
    state = {PREFIX + k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    data, header = flatten_tensor_state_dict(state)
    # safetensors refuses tensors that share storage; contiguous clones break any aliasing
    data = {k: v.contiguous().clone() for k, v in data.items()}

    def write(tmp: Path) -> None:
        save_file(data, str(tmp / WEIGHTS), metadata=header)
        doc = {"kind": kind, "config": config_to_dict(config), "meta": meta or {}, "quant": quant}
        (tmp / CONFIG).write_text(json.dumps(doc, indent=2))

    _atomic_dir_write(path, write)
    return path


def load_quantized_weights(path: str | Path, model: nn.Module, quant: dict[str, Any],
                           device: str | torch.device = "cpu") -> nn.Module:
    """Assign the torchao tensors of a quantized checkpoint to `model` (built fp32 from its config), on `device`.
    Raises a MetabonkError when `device` cannot run the checkpoint's format."""
    from torchao.prototype.safetensors.safetensors_support import unflatten_tensor_state_dict

    device = torch.device(device)
    try:
        recipe = Recipe(str(quant["format"]), bool(quant.get("weight_only", False)))
    except KeyError as e:
        raise MetabonkError(f"{path}: the quant section of {CONFIG} has no {e}") from e
    check_runnable(recipe, device)
    wfile = Path(path) / WEIGHTS
    if not wfile.is_file():
        raise MetabonkError(f"{path} has no {WEIGHTS}")
    with safe_open(str(wfile), "pt") as f:
        header = f.metadata() or {}
    if "tensor_names" not in header:
        raise MetabonkError(f"{wfile} carries no torchao tensor metadata: not written by `metabonk quantize`")
    try:
        state, leftover = unflatten_tensor_state_dict(load_file(str(wfile)), header)
        if leftover:
            raise MetabonkError(f"{wfile}: tensors without metadata: {', '.join(sorted(leftover)[:5])}")
        model.load_state_dict({k.removeprefix(PREFIX): v for k, v in state.items()}, assign=True)
    except (ValueError, RuntimeError, KeyError) as e:
        raise MetabonkError(f"{path}: quantized weights do not fit this model: {str(e).splitlines()[0]}") from e
    return model.to(device).eval()


def load_quantized(cls: Callable[[Any], nn.Module], config: Any, path: str | Path, quant: dict[str, Any],
                   found: dict[str, tuple[int, ...]], device: str | torch.device = "cpu") -> nn.Module:
    """`Checkpointed.load` of a quantized checkpoint: build the fp32 model from its config (allocations bounded by
    the weights file, as for any checkpoint) and assign its torchao tensors."""
    import math

    path = Path(path)
    budget = 4 * sum(math.prod(s) for s in found.values()) + (1 << 24)  # int4 groups: more scales than weights
    try:
        with _AllocationGuard(budget, path):
            model = cls(config)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError, AssertionError) as e:
        raise MetabonkError(f"{path}/{CONFIG} does not describe a valid model: {type(e).__name__}: {e}") from e
    return load_quantized_weights(path, model, quant, device)


def is_quantized(doc: dict[str, Any]) -> bool:
    """Whether a checkpoint's config.json document describes a quantized checkpoint."""
    return isinstance(doc.get("quant"), dict)
