"""`metabonk quantize`: load a checkpoint, pick the layers (hybrid budget or --keep), quantize, save, check drift."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from metabonk.common.errors import MetabonkError


@dataclass
class QuantizeArgs:
    """Options of `metabonk quantize` (see its --help)."""

    ckpt: Path
    out: Path
    format: str
    weight_only: bool = False
    keep: tuple[str, ...] = ()
    budget: float | None = None
    """Hybrid precision: keep the most sensitive layers so the probe's relative error stays under this."""
    check: bool = False
    data: Path | None = None
    episodes: int = 32
    max_steps: int = 2000
    dream_steps: int = 16
    probe_games: int = 8
    probe_steps: int = 24
    device: str = "cpu"
    seed: int = 0
    json_path: Path | None = None
    log: Any = field(default=print)


def quantize_checkpoint(args: QuantizeArgs) -> dict[str, Any]:
    """Write the quantized checkpoint to args.out and return the figures (also written as JSON)."""
    from metabonk.common.checkpoint import read_config
    from metabonk.common.device import device_label, resolve_device
    from metabonk.common.results import write_result
    from metabonk.quant.apply import quantize_model
    from metabonk.quant.formats import Recipe, check_runnable
    from metabonk.quant.models import checkpoint_kind, model_class, probe_rollout
    from metabonk.quant.store import is_quantized, save_quantized

    recipe = Recipe(args.format, args.weight_only)
    device = resolve_device(args.device)
    check_runnable(recipe, device)
    if args.out.resolve() == args.ckpt.resolve():
        raise MetabonkError("--out must differ from the source checkpoint (it is kept as the fp32 reference)")
    kind = checkpoint_kind(args.ckpt)
    doc = read_config(args.ckpt, kind=kind)
    if is_quantized(doc):
        raise MetabonkError(f"{args.ckpt} is already quantized ({doc['quant'].get('name')}); start from fp32")
    cls = model_class(kind)
    model = cls.load(args.ckpt, device)
    probe = probe_rollout(model, kind, args.probe_games, args.probe_steps, args.seed + 10_000, args.data)
    figures: dict[str, Any] = {"checkpoint": str(args.ckpt), "out": str(args.out), "kind": kind,
                               "format": recipe.name, "device": str(device)}
    keep = list(args.keep)
    if args.budget is not None:
        from metabonk.quant.sensitivity import hybrid_report

        rep = hybrid_report(model, kind, recipe, probe, args.budget, device)
        figures["hybrid"] = rep
        keep = sorted(set(keep) | set(rep["kept"]))
        args.log(f"hybrid: {len(rep['kept'])} of {len(rep['layers'])} layers kept; joint error "
                 f"{rep['joint_error']:.4f} (budget {args.budget}, all layers {rep['all_layers_error']:.4f})")
    quant = quantize_model(model, recipe, keep=keep, device=device)
    if "hybrid" in figures:
        quant["hybrid_budget"] = args.budget
    meta = {**doc.get("meta", {}), "quantized_from": str(args.ckpt)}
    save_quantized(args.out, model, model.config, kind, quant, meta)
    figures["quant"] = quant
    args.log(f"wrote {args.out}: {recipe.name}, {len(quant['layers'])} layers quantized "
             f"({quant['quantized_fraction']:.0%} of weights), {len(quant['kept'])} kept")
    if args.check:
        figures["drift"] = check_drift(args, kind, device, probe)
    path = args.json_path or Path("benchmarks/results") / f"quant-{kind}-{recipe.name}-{device_label(device)}.json"
    write_result(path, figures, device)
    figures["json"] = str(path)
    return figures


def check_drift(args: QuantizeArgs, kind: str, device: torch.device, probe: Any) -> dict[str, Any]:
    """The fp32 source against the quantized checkpoint, each loaded through the model's normal `load`."""
    from metabonk.quant import drift
    from metabonk.quant.models import model_class

    cls = model_class(kind)
    ref, quant = cls.load(args.ckpt, device), cls.load(args.out, device)
    if kind == "policy":
        return drift.policy_drift(ref, quant, probe, args.episodes, args.seed, args.max_steps, device)
    if kind == "world":
        from metabonk.quant.models import probe_rollout

        k = ref.config.num_context
        dream_probe = probe_rollout(ref, kind, args.probe_games, k + args.dream_steps, args.seed + 20_000, args.data)
        return drift.world_drift(ref, quant, dream_probe, args.dream_steps, args.seed)
    if kind == "lam":
        return drift.lam_drift(ref, quant, probe)
    return drift.idm_drift(ref, quant, probe)
