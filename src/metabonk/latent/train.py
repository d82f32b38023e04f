"""Trainers of the latent models (LAM, IDM) on the shared `metabonk.train.fit` loop, and the adapter's fit.

The loop shows a progress bar, logs TensorBoard scalars (OUT/tb, named lam/* or idm/*), saves the checkpoint
atomically every `save_every` steps and at the end (weights + config + trainer.pt), and resumes from trainer.pt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metabonk.common.checkpoint import load_trainer_state, read_config
from metabonk.common.device import resolve_device
from metabonk.common.errors import MetabonkError
from metabonk.latent.adapter import ActionAdapter, fit_adapter
from metabonk.latent.calibrate import calibrate_idm, check_calibration_set
from metabonk.latent.data import TransitionData
from metabonk.latent.idm import IDMConfig, InverseDynamicsModel
from metabonk.latent.lam import LAMConfig, LatentActionModel
from metabonk.train.fit import FitConfig, fit


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping of one training run."""

    steps: int = 3000
    """Total optimiser steps (a resumed run continues up to this count)."""
    batch: int = 32
    """Transitions per step."""
    lr: float = 1e-3
    """AdamW learning rate (cosine-decayed to 10 % over `steps`)."""
    save_every: int = 500
    """Checkpoint period in steps."""
    log_every: int = 25
    """TensorBoard period in steps."""
    seed: int = 0
    device: str = "auto"
    resume: bool = True
    """Continue from OUT/trainer.pt when present."""
    quiet: bool = False
    """Hide the progress bar (tests)."""
    threads: int = 0
    """CPU threads for torch (0 = leave as is); 1 is far faster on a CPU shared with other jobs."""

    def fit_config(self) -> FitConfig:
        """The shared loop's settings: AdamW (weight decay 1e-4), clipping at 1, cosine decay to 10 %, one batch
        generator per step (`default_rng((seed, step))`)."""
        return FitConfig(steps=self.steps, lr=self.lr, weight_decay=1e-4, grad_clip=1.0, log_every=self.log_every,
                         save_every=self.save_every, seed=self.seed, device=self.device, lr_final=0.1,
                         rng_per_step=True)


def _fit(model: torch.nn.Module, sample: Callable[[np.random.Generator], dict[str, torch.Tensor]],
         cfg: TrainConfig, out: Path, name: str, logdir: Path | None, meta: dict[str, Any]) -> None:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if not (cfg.resume and (out / "trainer.pt").exists()):
        torch.manual_seed(cfg.seed)  # a fresh run's noise follows the seed, whatever the model's init drew
    train = {k: v for k, v in vars(cfg).items() if k not in ("quiet", "threads")}
    fit(model, sample, cfg.fit_config(), out, {**meta, "train": train}, resume=cfg.resume,
        show_progress=not cfg.quiet, logdir=logdir if logdir is not None else out / "tb", name=f"train {name}",
        prefix=f"{name}/")


def _check_frames(data: TransitionData, what: str) -> None:
    if data.frame_size % 8 != 0:
        raise MetabonkError(f"{what} needs frames whose size is a multiple of 8, got {data.frame_size}")


def train_lam(data: TransitionData, out: str | Path, cfg: TrainConfig, model_cfg: LAMConfig | None = None,
              logdir: Path | None = None) -> LatentActionModel:
    """Train a latent action model on the frames of `data` (labels unused)."""
    out = Path(out)
    _check_frames(data, "the LAM")
    device = resolve_device(cfg.device)
    if cfg.resume and (out / "trainer.pt").exists():
        model = LatentActionModel.load(out, device)
    else:
        model_cfg = model_cfg or LAMConfig()
        model_cfg.frame_size = data.frame_size
        torch.manual_seed(cfg.seed)  # the initial weights follow the run's seed
        model = LatentActionModel(model_cfg).to(device)
    ctx = model.config.train_window - 2
    _fit(model, lambda rng: data.sample(cfg.batch, rng, ctx), cfg, out, "lam", logdir,
         meta={"env": data.env, "num_actions": data.num_actions, "transitions": len(data)})
    return model


def train_idm(data: TransitionData, out: str | Path, cfg: TrainConfig, labelled: int = 1000,
              model_cfg: IDMConfig | None = None, logdir: Path | None = None,
              calibration: float = 0.0) -> InverseDynamicsModel:
    """Train an IDM on `labelled` random labelled transitions of `data` (0 = all). With `calibration` > 0 that
    fraction of them (the tail of every episode) is kept out of training and fits the IDM's softmax temperature
    (`latent.calibrate`); the fit's figures go to the checkpoint's meta as "calibration"."""
    out = Path(out)
    _check_frames(data, "the IDM")
    if not data.labelled:
        raise MetabonkError("the IDM is trained on labelled episodes, and this store has no actions")
    if not 0.0 <= calibration < 1.0:
        raise MetabonkError(f"the calibration fraction must be in [0, 1), got {calibration}")
    device = resolve_device(cfg.device)
    subset = data.take(labelled, seed=cfg.seed)
    held = None
    if calibration > 0:
        subset, held = subset.tail_split(calibration)
        check_calibration_set(held)  # before training, not after it
    if cfg.resume and (out / "trainer.pt").exists():
        model = InverseDynamicsModel.load(out, device)
    else:
        model_cfg = model_cfg or IDMConfig()
        model_cfg.num_actions = data.num_actions
        model_cfg.movement = tuple(int(m) for m in data.movement_classes())
        model_cfg.frame_size = data.frame_size
        torch.manual_seed(cfg.seed)
        model = InverseDynamicsModel(model_cfg).to(device)
    ctx, fut = model.config.context, model.config.future
    meta = {"env": data.env, "labelled_transitions": len(subset) + (len(held) if held is not None else 0)}
    _fit(model, lambda rng: subset.sample(cfg.batch, rng, ctx, with_actions=True, future=fut), cfg, out, "idm", logdir,
         meta=meta)
    if held is not None:
        figures = calibrate_idm(model, held)
        saved = read_config(out)["meta"]
        model.save(out, meta={**saved, "calibration": figures}, trainer_state=load_trainer_state(out))
    return model


def train_adapter(data: TransitionData, lam_path: str | Path, out: str | Path, labelled: int = 1000,
                  seed: int = 0, device: str = "auto") -> ActionAdapter:
    """Fit the code <-> action adapter of the LAM at `lam_path` from `labelled` labelled transitions."""
    if not data.labelled:
        raise MetabonkError("the adapter is fitted on labelled episodes, and this store has no actions")
    lam = LatentActionModel.load(lam_path, resolve_device(device))
    subset = data.take(labelled, seed=seed)
    adapter = fit_adapter(lam, subset)
    adapter.save(out, meta={"env": data.env, "lam": str(lam_path), "labelled_transitions": len(subset)})
    return adapter
