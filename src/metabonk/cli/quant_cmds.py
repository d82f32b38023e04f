"""CLI verbs of the quant area: `quantize` (torchao formats, hybrid precision, drift check) and `export-onnx`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from metabonk.cli.app import app
from metabonk.common.errors import MetabonkError


@app.command("quantize")
def quantize_cmd(
    ckpt: Annotated[Path, typer.Argument(help="fp32 checkpoint: policy, world, lam or idm.")],
    format: Annotated[str, typer.Option("--format", help="int8 | int4 | fp8 | nvfp4 | mxfp4")],
    out: Annotated[Path, typer.Option(help="Quantized checkpoint directory to write.")],
    weight_only: Annotated[bool, typer.Option("--weight-only", help="Quantize weights only; activations stay "
                                              "fp32/bf16 (int8, fp8, nvfp4; int4 is always weight-only).")] = False,
    keep: Annotated[str, typer.Option(help="Comma-separated layer names kept in full precision.")] = "",
    budget: Annotated[float | None, typer.Option(help="Hybrid precision: per-layer sensitivity report, keeping the "
                                                 "most sensitive layers so the relative output error stays under "
                                                 "this (e.g. 0.02).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Measure drift against the fp32 checkpoint.")] = False,
    data: Annotated[Path | None, typer.Option(help="Episode store for the held-out frames (default: seeded "
                                              "Arena rollouts).")] = None,
    episodes: Annotated[int, typer.Option(help="--check, policy: Arena seeds for the return delta (0 = skip).")]
    = 32,
    max_steps: Annotated[int, typer.Option(help="--check, policy: step cap per episode.")] = 2000,
    dream_steps: Annotated[int, typer.Option(help="--check, world: dream steps compared.")] = 16,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed of the probe frames, dreams and episodes.")] = 0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Result file (default "
                                                   "benchmarks/results/quant-KIND-FORMAT-DEVICE.json).")] = None,
) -> None:
    """Quantize a model with torchao; the result loads through the normal `load` and runs in every verb."""
    from metabonk.quant.run import QuantizeArgs, quantize_checkpoint

    if episodes < 0 or max_steps < 1 or dream_steps < 1:
        raise MetabonkError("--episodes must be >= 0, --max-steps and --dream-steps >= 1")
    if budget is not None and budget <= 0:
        raise MetabonkError(f"--budget must be > 0, got {budget}")
    if device == "cpu":
        import torch

        torch.set_num_threads(1)  # small models on a shared CPU: one thread is fastest and steadiest
    res = quantize_checkpoint(QuantizeArgs(
        ckpt=ckpt, out=out, format=format, weight_only=weight_only,
        keep=tuple(k.strip() for k in keep.split(",") if k.strip()), budget=budget, check=check, data=data,
        episodes=episodes, max_steps=max_steps, dream_steps=dream_steps, device=device, seed=seed,
        json_path=json_path, log=typer.echo))
    if "drift" in res:
        _print_drift(res["kind"], res["drift"])
    typer.echo(f"wrote {res['json']}")


def _print_drift(kind: str, d: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{kind}: drift of the quantized model from fp32")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for key, v in d.items():
        if isinstance(v, list):
            v = ", ".join(f"{x:.2f}" for x in v[:16])
        elif isinstance(v, float):
            v = f"{v:.4f}"
        t.add_row(key, str(v))
    Console(soft_wrap=True).print(t)
