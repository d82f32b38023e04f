"""CLI verbs of the latent area: `train lam|idm|adapter`, `label`, `eval lam|idm`, `bench latent-curve`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metabonk.cli.app import EvalOptions, app, bench_app, register_eval, train_app
from metabonk.common.errors import MetabonkError

DataOpt = Annotated[Path, typer.Option("--data", help="Episode store directory.")]
OutOpt = Annotated[Path, typer.Option("--out", help="Checkpoint directory to write (and resume from).")]
StepsOpt = Annotated[int, typer.Option(help="Total optimiser steps.")]
BatchOpt = Annotated[int, typer.Option(help="Transitions per step.")]
DeviceOpt = Annotated[str, typer.Option(help="auto | cpu | cuda")]
ResumeOpt = Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from OUT/trainer.pt.")]
LogdirOpt = Annotated[Path | None, typer.Option(help="TensorBoard directory (default OUT/tb).")]
ThreadsOpt = Annotated[int, typer.Option(help="CPU threads for torch (0 = default; 1 suits a busy CPU).")]
TrunkOpt = Annotated[str, typer.Option(
    help="Encoder conv trunk: pooled (whole-view motion, Arena) | fullres (small moving objects, Pong).")]
LabelledOpt = Annotated[int, typer.Option("--labelled-transitions",
                                          help="Labelled transitions used (0 = all).")]


def _train_cfg(steps: int, batch: int, lr: float, device: str, resume: bool, seed: int,
               threads: int) -> object:
    from metabonk.latent.train import TrainConfig

    if steps < 1 or batch < 1:
        raise MetabonkError("--steps and --batch must be >= 1")
    return TrainConfig(steps=steps, batch=batch, lr=lr, device=device, resume=resume, seed=seed,
                       save_every=max(50, min(500, steps // 5)), threads=threads)


def _trunk(name: str) -> str:
    from metabonk.latent.lam import TRUNKS

    if name not in TRUNKS:
        raise MetabonkError(f"--trunk must be one of {', '.join(TRUNKS)}, got {name!r}")
    return name


def _split(data: Path) -> tuple[object, object]:
    from metabonk.latent.data import load_transitions

    return load_transitions(data).split()


@train_app.command("lam")
def train_lam_cmd(data: DataOpt, out: OutOpt, steps: StepsOpt = 3000, batch: BatchOpt = 32,
                  lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
                  codes: Annotated[int, typer.Option(help="Codebook size.")] = 8,
                  context: Annotated[int, typer.Option(help="Past frames besides x_t.")] = 1,
                  crop: Annotated[int, typer.Option(help="Model a centred crop of this size (0 = all).")] = 0,
                  width: Annotated[int, typer.Option(help="Channel width.")] = 16,
                  change_weight: Annotated[float, typer.Option(
                      help="Extra loss weight of pixels that change in the window (0 = plain MSE; Pong: 20).")
                  ] = 0.0,
                  object_shift: Annotated[int, typer.Option(
                      help="Object-motion features up to this many px/step (0 = off; Pong: 6).")] = 0,
                  decoder_blocks: Annotated[int, typer.Option(
                      help="Extra dilated decoder blocks for objects moving several px/step (Pong: 3).")] = 0,
                  decoder_motion: Annotated[bool, typer.Option(
                      help="Give the decoder how objects were already moving, so a code can name a change of "
                           "motion (needs --object-shift; Pong: on).")] = False,
                  independence_weight: Annotated[float, typer.Option(
                      help="Penalty on the mutual information of consecutive codes (0 = off; Pong: 0.001).")
                  ] = 0.0,
                  trunk: TrunkOpt = "pooled",
                  device: DeviceOpt = "auto", resume: ResumeOpt = True, logdir: LogdirOpt = None,
                  threads: ThreadsOpt = 0, seed: Annotated[int, typer.Option(help="Seed.")] = 0) -> None:
    """Train a latent action model on the frames of a store (actions not needed)."""
    from metabonk.common.checkpoint import check_out_dir
    from metabonk.latent.lam import LAMConfig
    from metabonk.latent.train import train_lam
    from metabonk.latent.vq import VQConfig

    if change_weight < 0 or decoder_blocks < 0 or object_shift < 0 or independence_weight < 0:
        raise MetabonkError("--change-weight, --object-shift, --decoder-blocks and --independence-weight "
                            "must be >= 0")
    if decoder_motion and object_shift <= 0:
        raise MetabonkError("--decoder-motion needs --object-shift > 0 (the range of the motion features)")
    trunk = _trunk(trunk)
    check_out_dir(out, data, logdir)
    train, _ = _split(data)
    cfg = LAMConfig(context=context, width=width, crop=crop, change_weight=change_weight,
                    decoder_blocks=decoder_blocks, object_shift=object_shift, trunk=trunk,
                    decoder_motion=decoder_motion, independence_weight=independence_weight,
                    vq=VQConfig(num_codes=codes))
    train_lam(train, out, _train_cfg(steps, batch, lr, device, resume, seed, threads), cfg, logdir)  # type: ignore[arg-type]
    typer.echo(f"saved LAM to {out}")


@train_app.command("idm")
def train_idm_cmd(data: DataOpt, out: OutOpt, steps: StepsOpt = 2000, batch: BatchOpt = 32,
                  lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
                  labelled: LabelledOpt = 1000,
                  crop: Annotated[int, typer.Option(help="Classify a centred crop (0 = all).")] = 0,
                  trunk: TrunkOpt = "pooled",
                  context: Annotated[int, typer.Option(help="Past frames besides x_t.")] = 1,
                  future: Annotated[int, typer.Option(
                      help="Frames after x_(t+1) the IDM sees (0 = causal; Pong: 1).")] = 0,
                  width: Annotated[int, typer.Option(help="Channel width.")] = 32,
                  object_shift: Annotated[int, typer.Option(
                      help="Object-motion features up to this many px/step (0 = off; Pong: 6).")] = 0,
                  object_pool: Annotated[str, typer.Option(
                      help="Pooling of the object-motion features: cells (8x8 grid) | stripes (8 columns + 8 "
                           "rows; Pong).")] = "cells",
                  calibrate: Annotated[float, typer.Option(
                      help="Fraction of the labelled transitions (the tail of every episode) kept out of training "
                           "to fit the softmax temperature (0 = off).")] = 0.0,
                  device: DeviceOpt = "auto", resume: ResumeOpt = True, logdir: LogdirOpt = None,
                  threads: ThreadsOpt = 0, seed: Annotated[int, typer.Option(help="Seed.")] = 0) -> None:
    """Train an inverse dynamics model on K labelled transitions of a store."""
    from metabonk.common.checkpoint import check_out_dir
    from metabonk.latent.evaluate import evaluate_idm, print_figures
    from metabonk.latent.idm import IDMConfig
    from metabonk.latent.lam import OBJECT_POOLS
    from metabonk.latent.train import train_idm

    trunk = _trunk(trunk)
    if object_pool not in OBJECT_POOLS:
        raise MetabonkError(f"unknown --object-pool {object_pool!r}: expected one of {', '.join(OBJECT_POOLS)}")
    check_out_dir(out, data, logdir)
    train, held = _split(data)
    cfg = IDMConfig(crop=crop, trunk=trunk, context=context, future=future, width=width, object_shift=object_shift,
                    object_pool=object_pool)
    idm = train_idm(train, out, _train_cfg(steps, batch, lr, device, resume, seed, threads),  # type: ignore[arg-type]
                    labelled=labelled, model_cfg=cfg, logdir=logdir, calibration=calibrate)
    if calibrate > 0:
        typer.echo(f"softmax temperature {idm.config.temperature:.3f} (fitted on held-out labels)")
    print_figures(f"IDM {out} (held-out)", evaluate_idm(idm, held, max_transitions=2000))  # type: ignore[arg-type]


@train_app.command("adapter")
def train_adapter_cmd(data: DataOpt, out: OutOpt,
                      lam: Annotated[Path, typer.Option("--lam", help="Trained LAM checkpoint.")],
                      labelled: LabelledOpt = 1000, device: DeviceOpt = "auto",
                      seed: Annotated[int, typer.Option(help="Seed.")] = 0) -> None:
    """Fit the latent-code <-> real-action adapter of a LAM from a few labelled transitions."""
    from metabonk.common.checkpoint import check_out_dir
    from metabonk.latent.train import train_adapter

    check_out_dir(out, data, lam)
    train, _ = _split(data)
    train_adapter(train, lam, out, labelled=labelled, seed=seed, device=device)  # type: ignore[arg-type]
    typer.echo(f"saved adapter to {out}")


@app.command("label")
def label_cmd(idm: Annotated[Path, typer.Option("--idm", help="Trained IDM checkpoint.")], data: DataOpt,
              device: DeviceOpt = "auto") -> None:
    """Write IDM actions (`action_idm`) and confidences (`action_idm_conf`) into every episode of a store."""
    from metabonk.latent.label import label_store

    summary = label_store(idm, data, device=device)
    typer.echo(", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()))


def _write(figures: dict[str, object], opts: EvalOptions, device: str) -> None:
    if opts.json_path is not None:
        from metabonk.common.device import resolve_device
        from metabonk.common.results import write_result

        write_result(opts.json_path, figures, resolve_device(device))
        typer.echo(f"wrote {opts.json_path}")


def _need_data(opts: EvalOptions) -> Path:
    if opts.data is None:
        raise MetabonkError("this evaluation needs --data DIR (an episode store)")
    return opts.data


def eval_lam(ckpt: Path, opts: EvalOptions) -> None:
    """Probe accuracy, ΔtPSNR, codebook usage and the adapter curve of a LAM on a store's held-out split."""
    from metabonk.common.device import resolve_device
    from metabonk.latent.evaluate import evaluate_lam, print_figures
    from metabonk.latent.lam import LatentActionModel

    lam = LatentActionModel.load(ckpt, resolve_device(opts.device))
    train, held = _split(_need_data(opts))
    figures = evaluate_lam(lam, train, held, seed=opts.seed)  # type: ignore[arg-type]
    figures["checkpoint"] = str(ckpt)
    print_figures(f"LAM {ckpt}", figures)
    _write(figures, opts, opts.device)


def eval_idm(ckpt: Path, opts: EvalOptions) -> None:
    """IDM accuracy (action and movement class) on a store's held-out split."""
    from metabonk.common.device import resolve_device
    from metabonk.latent.evaluate import evaluate_idm, print_figures
    from metabonk.latent.idm import InverseDynamicsModel

    idm = InverseDynamicsModel.load(ckpt, resolve_device(opts.device))
    _, held = _split(_need_data(opts))
    figures = evaluate_idm(idm, held, seed=opts.seed)  # type: ignore[arg-type]
    figures["checkpoint"] = str(ckpt)
    print_figures(f"IDM {ckpt}", figures)
    _write(figures, opts, opts.device)


register_eval("lam", eval_lam)
register_eval("idm", eval_idm)


@bench_app.command("latent-curve")
def bench_latent_curve(data: DataOpt,
                       budgets: Annotated[str, typer.Option(help="Comma-separated labelled counts.")]
                       = "100,1000,10000",
                       steps: StepsOpt = 600, batch: BatchOpt = 32, device: DeviceOpt = "auto",
                       crop: Annotated[int, typer.Option(help="IDM centred crop (0 = all).")] = 0,
                       threads: ThreadsOpt = 0) -> None:
    """IDM accuracy vs labelled transitions; writes benchmarks/results/latent-curve-<device>.json."""
    from metabonk.bench.latent_curve import run_latent_curve

    counts = [int(x) for x in budgets.split(",") if x.strip()]
    run_latent_curve(data, counts, steps=steps, batch=batch, device=device, crop=crop, threads=threads)
