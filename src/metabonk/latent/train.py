"""Trainers for the latent models: one loop drives any `forward(batch) -> (loss, metrics)` model.

The loop shows a progress bar, logs TensorBoard scalars, saves the checkpoint atomically every
`save_every` steps and at the end (weights + config + trainer.pt), and resumes from trainer.pt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from metabonk.common.checkpoint import load_trainer_state, load_weights
from metabonk.common.device import resolve_device
from metabonk.common.errors import MetabonkError
from metabonk.common.logging import ScalarLogger, progress_bar
from metabonk.latent.adapter import ActionAdapter, fit_adapter
from metabonk.latent.data import TransitionData
from metabonk.latent.idm import IDMConfig, InverseDynamicsModel
from metabonk.latent.lam import LAMConfig, LatentActionModel


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping of one training run."""

    steps: int = 3000
    """Total optimiser steps (a resumed run continues up to this count)."""
    batch: int = 32
    """Transitions per step."""
    lr: float = 1e-3
    """Adam learning rate (cosine-decayed to 10 % over `steps`)."""
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


class Trainable(Protocol):
    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]: ...

    def save(self, path: str | Path, meta: dict[str, Any] | None = None,
             trainer_state: dict[str, Any] | None = None) -> Path: ...


def fit(model: torch.nn.Module, sample: Callable[[np.random.Generator], dict[str, torch.Tensor]],
        cfg: TrainConfig, out: Path, name: str, logdir: Path | None = None,
        meta: dict[str, Any] | None = None) -> ScalarLogger:
    """Train `model` on batches from `sample(rng)`; saves to `out` periodically and at the end."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    start = 0
    state = load_trainer_state(out) if cfg.resume and out.exists() else None
    if state is not None:
        load_weights(out, model, next(model.parameters()).device)
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
    logger = ScalarLogger(logdir if logdir is not None else out / "tb")
    torch.manual_seed(cfg.seed + start)
    meta = {**(meta or {}), "train": {k: v for k, v in vars(cfg).items() if k not in ("quiet", "threads")}}

    def save(step: int) -> None:
        logger.close()  # flush; the checkpoint writer carries the tb/ folder into the new directory
        model.save(out, meta={**meta, "step": step},  # type: ignore[operator]
                   trainer_state={"step": step, "optimizer": opt.state_dict()})

    model.train()
    with progress_bar(f"train {name}", total=cfg.steps, disable=cfg.quiet) as advance:
        advance(start)
        for step in range(start, cfg.steps):
            for group in opt.param_groups:
                group["lr"] = cfg.lr * float(0.1 + 0.45 * (1 + np.cos(np.pi * step / max(cfg.steps, 1))))
            batch = sample(np.random.default_rng((cfg.seed, step)))
            loss, metrics = model(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                scalars = {f"{name}/{k}": v for k, v in metrics.items()}
                logger.log(done, **scalars, lr=opt.param_groups[0]["lr"])
            if done % cfg.save_every == 0 and done < cfg.steps:
                save(done)
            advance(1, status=f"loss {metrics['loss']:.4f}")
    save(cfg.steps)
    model.eval()
    logger.close()
    return logger


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
    fit(model, lambda rng: data.sample(cfg.batch, rng, ctx), cfg, out, "lam", logdir,
        meta={"env": data.env, "num_actions": data.num_actions, "transitions": len(data)})
    return model


def train_idm(data: TransitionData, out: str | Path, cfg: TrainConfig, labelled: int = 1000,
              model_cfg: IDMConfig | None = None, logdir: Path | None = None) -> InverseDynamicsModel:
    """Train an IDM on `labelled` random labelled transitions of `data` (0 = all)."""
    out = Path(out)
    _check_frames(data, "the IDM")
    if not data.labelled:
        raise MetabonkError("the IDM is trained on labelled episodes, and this store has no actions")
    device = resolve_device(cfg.device)
    subset = data.take(labelled, seed=cfg.seed)
    if cfg.resume and (out / "trainer.pt").exists():
        model = InverseDynamicsModel.load(out, device)
    else:
        model_cfg = model_cfg or IDMConfig()
        model_cfg.num_actions = data.num_actions
        model_cfg.movement = tuple(int(m) for m in data.movement_classes())
        model_cfg.frame_size = data.frame_size
        torch.manual_seed(cfg.seed)
        model = InverseDynamicsModel(model_cfg).to(device)
    ctx = model.config.context
    fit(model, lambda rng: subset.sample(cfg.batch, rng, ctx, with_actions=True), cfg, out, "idm", logdir,
        meta={"env": data.env, "labelled_transitions": len(subset)})
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
