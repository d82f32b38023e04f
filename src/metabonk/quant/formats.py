"""Quantization formats: which torchao config each layer of a format gets, and whether this machine can run it.

A format is applied per layer (nn.Linear, nn.Conv2d). Where torchao has no kernel for a layer type in a format the
layer stays in full precision and the recipe says so (`kept`), e.g. convolutions in fp8/nvfp4 (torchao's fp8 conv
needs the optional MSLK kernels). Formats that the hardware cannot run raise one MetabonkError line; there is no
silent fallback to another format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from metabonk.common.errors import MetabonkError

FORMATS = ("int8", "int4", "fp8", "nvfp4", "mxfp4")
INT4_GROUP = 32
"""Group size of int4 weights (along the input dimension); a layer whose input width it does not divide gets one
scale per output channel instead."""


@dataclass(frozen=True)
class Recipe:
    """What `metabonk quantize` was asked for: a format, with or without quantized activations."""

    format: str
    weight_only: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise MetabonkError(f"unknown --format '{self.format}' (choose {', '.join(FORMATS)})")
        if self.format == "int4" and not self.weight_only:
            object.__setattr__(self, "weight_only", True)  # torchao's CPU-portable int4 is weight-only
        if self.format == "mxfp4" and self.weight_only:
            raise MetabonkError("mxfp4 has no weight-only mode in torchao; use --format nvfp4 --weight-only")

    @property
    def name(self) -> str:
        return self.format + ("-wo" if self.weight_only and self.format != "int4" else "")


def cuda_capability(device: torch.device) -> tuple[int, int] | None:
    """(major, minor) of a CUDA device, None for the CPU."""
    if device.type != "cuda":
        return None
    return torch.cuda.get_device_capability(device)


def check_runnable(recipe: Recipe, device: torch.device) -> None:
    """Raise one clear line when `device` cannot run `recipe` natively (no silent fallback)."""
    cap = cuda_capability(device)
    where = "this CPU" if cap is None else f"{torch.cuda.get_device_name(device)} (sm{cap[0]}{cap[1]})"
    fmt = recipe.format
    if fmt == "fp8" and not recipe.weight_only and (cap is None or cap < (8, 9)):
        raise MetabonkError(
            f"fp8 with fp8 activations needs a CUDA GPU of compute capability >= 8.9 (Ada/Hopper); {where} has "
            "none. --weight-only stores fp8 weights and computes in fp32/bf16 (runs anywhere, dequantizes per call)")
    if fmt in ("nvfp4", "mxfp4") and not recipe.weight_only and (cap is None or cap < (10, 0)):
        hint = " --format nvfp4 --weight-only keeps FP4 weights with fp32/bf16 activations (dequantized per call)"
        raise MetabonkError(f"{fmt} matmuls need an NVIDIA Blackwell GPU (sm100+); {where} cannot run them.{hint}")
    if fmt == "mxfp4":
        raise MetabonkError("mxfp4 needs bf16 weights and a Blackwell GPU in torchao; not built for MetaBonk's fp32 "
                            "models (no Blackwell GPU was available to test it)")


def _torchao() -> Any:
    try:
        import torchao.quantization as q
    except ImportError as e:
        raise MetabonkError("quantization needs torchao: pip install 'metabonk[quant]'") from e
    return q


def _fp8_granularity(module: nn.Module, per_row: Any, per_tensor: Any) -> Any:
    """torchao scales fp8 per row only for bf16 weights (measured on an H200: fp32 weights raise); fp32 layers
    take one scale per tensor."""
    return per_row() if module.weight.dtype == torch.bfloat16 else per_tensor()


def layer_config(recipe: Recipe, module: nn.Module) -> tuple[Any, str] | None:
    """The torchao config for one layer and a short label, or None where the format has no path for it."""
    q = _torchao()
    from torchao.quantization.granularity import PerAxis, PerGroup, PerRow, PerTensor

    fmt, wo = recipe.format, recipe.weight_only
    if isinstance(module, nn.Linear):
        k, n = module.in_features, module.out_features
        if fmt == "int8":
            return (q.Int8WeightOnlyConfig(), "int8 weights") if wo else \
                (q.Int8DynamicActivationInt8WeightConfig(), "int8 weights x int8 dynamic activations")
        if fmt == "int4":
            gran = PerGroup(INT4_GROUP) if k % INT4_GROUP == 0 else PerAxis(0)
            return q.IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=gran), f"int4 weights ({gran})"
        if fmt == "fp8":
            return (q.Float8WeightOnlyConfig(), "fp8 e4m3 weights") if wo else \
                (q.Float8DynamicActivationFloat8WeightConfig(granularity=_fp8_granularity(module, PerRow, PerTensor)),
                 "fp8 weights x fp8 activations")
        if fmt == "nvfp4":
            if k % 16 or n % 16:
                return None  # NVFP4 blocks are 16 wide on both dims
            from torchao.prototype.mx_formats import NVFP4DynamicActivationNVFP4WeightConfig, NVFP4WeightOnlyConfig

            return (NVFP4WeightOnlyConfig(), "nvfp4 weights") if wo else \
                (NVFP4DynamicActivationNVFP4WeightConfig(), "nvfp4 weights x nvfp4 activations")
        return None
    if isinstance(module, nn.Conv2d) and module.groups == 1:
        # torchao runs convolutions only through its int-x weight-only tensor (dequantized per call)
        if fmt == "int8":
            return q.IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0)), "int8 weights (conv)"
        if fmt == "int4":
            gran = PerGroup(INT4_GROUP) if module.in_channels % INT4_GROUP == 0 else PerAxis(0)
            return q.IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=gran), f"int4 weights (conv, {gran})"
    return None


def quantizable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Linear and Conv2d: the layers a format may quantize."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
