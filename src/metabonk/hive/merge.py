"""Merging same-init policies as plain state dicts: task arithmetic, TIES, DARE, uniform/EMA soup and RAM.

Every method sees the base (the shared starting point) and the specialists' state dicts, works on task
vectors tau_i = theta_i - theta_base tensor by tensor, and returns a new state dict. Non-float tensors
(counters, integer buffers) are taken from the base unchanged.

Written here rather than imported from mergekit (arcee-ai/mergekit, which has every one of them): its
methods are registered through its own task graph and architecture files and its package pulls in
transformers, accelerate and a Hugging Face model layout; our policies are small plain state dicts, and
each rule below is a few lines of tensor arithmetic (cited to its paper).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

from metabonk.common.errors import MetabonkError

StateDict = dict[str, torch.Tensor]


@dataclass
class MergeOptions:
    """Knobs of the merge rules (paper defaults)."""

    scale: float = 1.0
    """lambda: the merged task vector is multiplied by this before it is added to the base."""
    density: float = 0.2
    """TIES: fraction of each task vector's entries (largest magnitude, per tensor) kept by the trim."""
    drop: float = 0.5
    """DARE: probability of dropping each task-vector entry; survivors are rescaled by 1 / (1 - drop)."""
    ema: float = 0.5
    """EMA soup: theta <- ema * theta + (1 - ema) * theta_i over the specialists in order."""
    threshold: float = 0.1
    """RAM: an entry counts as updated where |tau| > threshold * RMS(tau) of that tensor (Adam moves every
    entry a little, so an absolute 1e-5 would call everything shared)."""
    ram_r: float = 0.1
    ram_alpha: float = 0.2
    """RAM+ rescale of unique updates: lambda_i = 1 + r * clamp(shared_i / unique_i, 0, alpha)."""
    seed: int = 0
    """DARE's drop masks."""
    layer_scales: dict[str, float] = field(default_factory=dict)
    """Per-layer lambda (layer-wise AdaMerging, Yang et al. 2024, with the coefficients picked on validation
    data instead of learned): tensor-name prefix -> lambda, the longest matching prefix wins; tensors that no
    prefix matches use `scale`. Applies to every lambda-scaled rule (task arithmetic, TIES, DARE, RAM)."""


def tensor_group(name: str) -> str:
    """The module that owns a tensor ("actor.0.weight" -> "actor.0"): the unit a per-layer lambda scales."""
    return name.rsplit(".", 1)[0] if "." in name else name


def tensor_groups(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The sorted groups (owner modules) of a state dict's float tensors."""
    return sorted({tensor_group(k) for k, v in state.items() if v.is_floating_point()})


def scale_for(name: str, scale: float, layer_scales: Mapping[str, float]) -> float:
    """lambda of tensor `name`: the longest prefix of `layer_scales` that matches it whole-component, else `scale`."""
    hits = [p for p in layer_scales if name == p or name.startswith(p + ".")]
    return float(layer_scales[max(hits, key=len)]) if hits else scale


def _check(base: Mapping[str, torch.Tensor], models: list[StateDict]) -> None:
    if not models:
        raise MetabonkError("merge needs at least one specialist checkpoint")
    for i, m in enumerate(models):
        if set(m) != set(base):
            extra = sorted(set(m) ^ set(base))[:3]
            raise MetabonkError(f"checkpoint {i} does not have the base's tensors (differs at {extra})")
        for k, v in m.items():
            if v.shape != base[k].shape:
                raise MetabonkError(f"checkpoint {i}: '{k}' has shape {tuple(v.shape)}, base {tuple(base[k].shape)}")


def _per_tensor(
    base: Mapping[str, torch.Tensor], models: list[StateDict], rule: Callable[[torch.Tensor], torch.Tensor],
    scale: float, layer_scales: Mapping[str, float] | None = None,
) -> StateDict:
    """Apply `rule` to the stacked task vectors [M, ...] of each float tensor; base + lambda * result, lambda
    from `scale_for` (per-layer where `layer_scales` names the tensor's prefix)."""
    _check(base, models)
    out: StateDict = {}
    # Sorted names: a dict loaded from safetensors bytes has no fixed key order across processes, and DARE's
    # masks come from one generator walked tensor by tensor.
    for k in sorted(base):
        b = base[k]
        if not b.is_floating_point():
            out[k] = b.clone()
            continue
        tau = torch.stack([m[k].to(b.dtype) - b for m in models])
        out[k] = b + scale_for(k, scale, layer_scales or {}) * rule(tau)
    return out


def task_arithmetic(base: StateDict, models: list[StateDict], opt: MergeOptions | None = None) -> StateDict:
    """Ilharco et al. 2023: theta = base + lambda * sum_i tau_i."""
    o = opt or MergeOptions()
    return _per_tensor(base, models, lambda tau: tau.sum(0), o.scale, o.layer_scales)


def soup(base: StateDict, models: list[StateDict], opt: MergeOptions | None = None) -> StateDict:
    """Uniform model soup (Wortsman et al. 2022): the plain average of the specialists' weights."""
    return _per_tensor(base, models, lambda tau: tau.mean(0), 1.0)


def ema_soup(base: StateDict, models: list[StateDict], opt: MergeOptions | None = None) -> StateDict:
    """Exponential moving average over the specialists in order (the latest weighs 1 - ema)."""
    o = opt or MergeOptions()

    def rule(tau: torch.Tensor) -> torch.Tensor:
        acc = tau[0]
        for t in tau[1:]:
            acc = o.ema * acc + (1.0 - o.ema) * t
        return acc

    return _per_tensor(base, models, rule, 1.0)


def trim(tau: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the `density` fraction of largest-magnitude entries of each task vector tau [M, ...]."""
    flat = tau.flatten(1)
    k = max(1, round(density * flat.shape[1]))
    if k >= flat.shape[1]:
        return tau
    cut = flat.abs().topk(k, dim=1).values[:, -1:]
    return (flat * (flat.abs() >= cut)).view_as(tau)


def elect_sign(tau: torch.Tensor) -> torch.Tensor:
    """TIES' elected sign per entry: the sign of the summed (trimmed) updates, i.e. of the larger total mass."""
    return torch.sign(tau.sum(0))


def disjoint_mean(tau: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Mean over only the task vectors whose entry agrees with the elected sign (zeros do not vote)."""
    agree = (torch.sign(tau) == sign) & (tau != 0)
    n = agree.sum(0).clamp(min=1)
    return (tau * agree).sum(0) / n


def ties(base: StateDict, models: list[StateDict], opt: MergeOptions | None = None) -> StateDict:
    """Yadav et al. 2023 (TIES-merging): trim, elect sign, disjoint merge; base + lambda * merged."""
    o = opt or MergeOptions()

    def rule(tau: torch.Tensor) -> torch.Tensor:
        t = trim(tau, o.density)
        return disjoint_mean(t, elect_sign(t))

    return _per_tensor(base, models, rule, o.scale, o.layer_scales)


def dare_drop(tau: torch.Tensor, drop: float, generator: torch.Generator) -> torch.Tensor:
    """Drop each entry with probability `drop`, rescale the rest by 1 / (1 - drop): unbiased in expectation."""
    if not 0.0 <= drop < 1.0:
        raise MetabonkError(f"DARE drop must be in [0, 1), got {drop}")
    keep = torch.rand(tau.shape, generator=generator) >= drop
    return tau * keep.to(tau.dtype) / (1.0 - drop)


def dare(base: StateDict, models: list[StateDict], opt: MergeOptions | None = None) -> StateDict:
    """Yu et al. 2024 (DARE, the linear variant): drop-and-rescale each task vector, then sum (lambda)."""
    o = opt or MergeOptions()
    g = torch.Generator().manual_seed(o.seed)
    return _per_tensor(base, models, lambda tau: dare_drop(tau, o.drop, g).sum(0), o.scale, o.layer_scales)


def ram_masks(tau: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RAM's probe: (updated [M, ...], unique [...]: exactly one specialist moved it, shared [...]: several)."""
    rms = tau.flatten(1).pow(2).mean(1).sqrt().clamp(min=1e-12)
    updated = tau.abs() > threshold * rms.view(-1, *([1] * (tau.dim() - 1)))
    count = updated.sum(0)
    return updated, count == 1, count > 1


def ram(base: StateDict, models: list[StateDict], opt: MergeOptions | None = None) -> StateDict:
    """Yuan et al. 2026 (Reinforced Agent Merging, arXiv 2601.13572, the RAM+ rescale): shared updates are
    averaged over the specialists that made them; each specialist's unique updates are kept whole and
    rescaled by lambda_i = 1 + r * clamp(|shared_i| / |unique_i|, 0, alpha), counted per tensor."""
    o = opt or MergeOptions()

    def rule(tau: torch.Tensor) -> torch.Tensor:
        updated, unique, shared = ram_masks(tau, o.threshold)
        tau = tau * updated
        m = tau.shape[0]
        per = updated.flatten(1)
        n_shared = (per & shared.flatten().unsqueeze(0)).sum(1).float()
        n_unique = (per & unique.flatten().unsqueeze(0)).sum(1).float()
        lam = 1.0 + o.ram_r * (n_shared / n_unique.clamp(min=1.0)).clamp(0.0, o.ram_alpha)
        lam = lam.view(m, *([1] * (tau.dim() - 1)))
        shared_part = (tau * shared).sum(0) / updated.sum(0).clamp(min=1)
        return (tau * unique * lam).sum(0) + shared_part

    return _per_tensor(base, models, rule, o.scale, o.layer_scales)


METHODS: dict[str, Callable[[StateDict, list[StateDict], MergeOptions | None], StateDict]] = {
    "task-arith": task_arithmetic,
    "ties": ties,
    "dare": dare,
    "ram": ram,
    "soup": soup,
    "ema": ema_soup,
}
"""Merge method name (the CLI's --method) -> function(base, specialists, options)."""
SCALED = ("task-arith", "ties", "dare", "ram")
"""The methods whose merged task vector lambda (`scale`, `layer_scales`) multiplies; soups ignore lambda."""


def merge(method: str, base: StateDict, models: list[StateDict], opt: MergeOptions | None = None) -> StateDict:
    """Merge `models` (same init as `base`) with the named method."""
    if method not in METHODS:
        raise MetabonkError(f"unknown merge method '{method}' (choose {', '.join(METHODS)})")
    return METHODS[method](base, models, opt)
