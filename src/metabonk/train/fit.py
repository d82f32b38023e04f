"""The one training loop: any model whose `forward(batch)` returns `(loss, metrics)` (0-dim tensors) is trained
by `Fitter` (AdamW, LR warm-up and optional cosine decay, gradient clipping, EMA of the weights, metrics summed
on device) and driven by `fit` (progress bar, TensorBoard, atomic checkpoints every `save_every` steps, exact
resume from the checkpoint's trainer state), as DIAMOND's `Trainer.train_component` drives all its models.

Metrics stay tensors: each step adds them to device-side sums; the only host sync is one `.tolist()` per log
interval (`Fitter.log_now`). The clipped gradient norm, the AdamW step and the scheduler do not sync either.

Under `torchrun --nproc-per-node N` `fit` trains data-parallel (`metabonk.train.distributed`): DDP-wrapped
forward, each rank takes its slice of the same global batch, rank 0 alone writes checkpoints and TensorBoard.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metabonk.common.checkpoint import load_trainer_state, load_weights
from metabonk.common.device import resolve_device
from metabonk.common.errors import MetabonkError
from metabonk.common.logging import ScalarLogger, console, progress_bar
from metabonk.train import distributed


@dataclass
class FitConfig:
    """Optimisation and bookkeeping of one model's training run."""

    steps: int
    """Total optimiser steps (a resumed run continues up to this count)."""
    lr: float = 1e-3
    """Peak AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW (decoupled) weight decay."""
    warmup_steps: int = 0
    """Linear LR warm-up: step s uses lr · min(1, (s+1)/warmup_steps)."""
    grad_clip: float | None = 1.0
    """Clip the global gradient norm to this (None = no clipping)."""
    ema_decay: float = 0.0
    """Exponential moving average of the weights (0 = off), warmed up as min(decay, (1+s)/(10+s)). When on,
    checkpoints hold the average (the raw weights go to the trainer state) and `fit` returns it."""
    log_every: int = 50
    """Log period in steps: the one host sync of the metric sums."""
    save_every: int = 1000
    """Checkpoint period in steps (`fit` also saves at the end)."""
    seed: int = 0
    """Seeds the numpy generator handed to `sample` (torch is the caller's to seed, before building the model)."""
    device: str = "auto"
    """'auto' | 'cpu' | 'cuda[:N]' (`fit` moves the model there)."""
    lr_final: float = 1.0
    """Cosine-decay the LR to this fraction of `lr` over `steps` (1 = constant after warm-up)."""
    autocast: str | None = None
    """'bf16' runs each forward under torch.autocast with bfloat16 (weights, optimiser and EMA stay fp32);
    None = full precision."""
    rng_per_step: bool = False
    """Draw step s's batch from `default_rng((seed, s))` instead of one generator seeded with `seed` (the latent
    trainers' scheme). Either way a resumed run draws what an uninterrupted one would."""


def lr_factor(step: int, cfg: FitConfig) -> float:
    """Multiplier of `cfg.lr` at optimiser step `step`: linear warm-up times cosine decay to `lr_final`."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    if cfg.lr_final == 1.0:
        return warm
    span = (1.0 - cfg.lr_final) / 2
    return warm * float(cfg.lr_final + span * (1 + np.cos(np.pi * min(step, cfg.steps) / max(cfg.steps, 1))))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema ← decay·ema + (1 − decay)·model for parameters; buffers are copied."""
    for e, m in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(m.detach(), 1.0 - decay)
    for e, m in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(m)


def to_device(batch: Any, device: torch.device) -> Any:
    """A batch (tensor, or dict/list/tuple of them, nested) on `device`; other values pass through."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class Fitter:
    """Owns one model's optimizer (AdamW), LR warm-up, grad clipping, EMA copy, step counter and metric
    accumulation. Metrics stay tensors: summed on device each step, one host sync per log interval."""

    def __init__(self, model: nn.Module, cfg: FitConfig, logger: ScalarLogger | None = None, prefix: str = "",
                 params: Iterable[nn.Parameter] | None = None) -> None:
        self.model, self.cfg, self.logger, self.prefix = model, cfg, logger, prefix
        self.params = list(params) if params is not None else list(model.parameters())
        if not self.params:
            raise MetabonkError(f"{type(model).__name__} has no parameters to train")
        if cfg.autocast not in (None, "bf16"):
            raise MetabonkError(f"FitConfig.autocast must be None or 'bf16', got '{cfg.autocast}'")
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(s, cfg))
        self._ema = copy.deepcopy(model).eval().requires_grad_(False) if cfg.ema_decay > 0 else None
        self._step = 0
        # metric sums per key set: one stacked tensor each, so a step adds one vector, not one tensor per metric
        self._sums: dict[tuple[str, ...], list[Any]] = {}
        self._clock = (time.perf_counter(), 0)
        self.last: dict[str, float] = {}
        """The floats of the last log interval (prefix not applied)."""
        self.last_logged_step = -1
        self.forward_module: nn.Module = model
        """What `step` calls: the model, or its DistributedDataParallel wrapper (set by `fit` under torchrun)."""
        self.dist: distributed.DistInfo | None = None
        """Set under torchrun: `log_now` then averages the metric sums over ranks (one all-reduce)."""

    @property
    def ema_model(self) -> nn.Module:
        """The weight average (the model itself when EMA is off)."""
        return self._ema if self._ema is not None else self.model

    @property
    def step_count(self) -> int:
        """Optimiser steps taken so far (restored by `load_state_dict`)."""
        return self._step

    @property
    def device(self) -> torch.device:
        return self.params[0].device

    def step(self, batch: Any) -> dict[str, torch.Tensor]:
        """One update on `batch`; returns the step's metrics (tensors, with 'loss' and 'grad_norm')."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.autocast == "bf16"):
            loss, metrics = self.forward_module(to_device(batch, self.device))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        out = {"loss": loss.detach(), **metrics}
        if self.cfg.grad_clip is not None:
            out["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        if self._ema is not None:
            update_ema(self._ema, self.model, min(self.cfg.ema_decay, (1 + self._step) / (10 + self._step)))
        self._step += 1
        self._accumulate(out)
        if self._step % self.cfg.log_every == 0 or self._step == self.cfg.steps:
            self.log_now()
        return out

    def _accumulate(self, metrics: dict[str, Any]) -> None:
        keys = tuple(metrics)
        vec = torch.stack([torch.as_tensor(v, device=self.device).detach().float().reshape(()) for v in
                           metrics.values()])
        entry = self._sums.get(keys)
        if entry is None:
            self._sums[keys] = [vec, 1]
        else:
            entry[0] = entry[0] + vec
            entry[1] += 1

    def log_now(self) -> dict[str, float] | None:
        """Mean of each metric since the last call (one host sync), plus lr and steps_per_s; logged to the
        logger under `prefix`. None when no step was taken since the last call."""
        if not self._sums:
            return None
        groups = list(self._sums.items())
        flat = distributed.mean_across(torch.cat([total for _, (total, _) in groups]), self.dist).tolist()  # sync
        totals: dict[str, list[float]] = {}
        i = 0
        for keys, (_, n) in groups:
            for k in keys:
                t = totals.setdefault(k, [0.0, 0])
                t[0] += flat[i]
                t[1] += n
                i += 1
        means = {k: s / n for k, (s, n) in totals.items()}
        now, since = time.perf_counter(), self._clock
        means["lr"] = self.opt.param_groups[0]["lr"]
        means["steps_per_s"] = (self._step - since[1]) / max(now - since[0], 1e-9)
        self._sums, self._clock = {}, (now, self._step)
        self.last, self.last_logged_step = means, self._step
        if self.logger is not None:
            self.logger.log(self._step, **{f"{self.prefix}{k}": v for k, v in means.items()})
        return means

    def state_dict(self, full: bool = True) -> dict[str, Any]:
        """Optimizer, scheduler, step, raw weights and EMA weights. `full=False` leaves out the weights a
        checkpoint already holds (`fit` saves `ema_model` as the checkpoint): the EMA, and the raw weights
        when there is no EMA."""
        d: dict[str, Any] = {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                             "step": self._step}
        if full or self._ema is not None:
            d["raw_weights"] = self.model.state_dict()
        if full and self._ema is not None:
            d["ema"] = self._ema.state_dict()
        return d

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore `state_dict()` (full or not; call after loading the checkpoint's weights into the model).
        Older trainer states without a scheduler or raw weights resume too: the LR follows the step."""
        if self._ema is not None:
            self._ema.load_state_dict(d["ema"] if "ema" in d else self.model.state_dict())
        if "raw_weights" in d:
            self.model.load_state_dict(d["raw_weights"])
        self.opt.load_state_dict(d["optimizer"])
        self._step = int(d["step"])
        if "scheduler" in d:
            self.sched.load_state_dict(d["scheduler"])
        else:
            self.sched.last_epoch = self._step
            for group, base in zip(self.opt.param_groups, self.sched.base_lrs, strict=True):
                group["lr"] = base * lr_factor(self._step, self.cfg)
        self._sums, self._clock = {}, (time.perf_counter(), self._step)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def fit(model: nn.Module, sample: Callable[[np.random.Generator], Any], cfg: FitConfig, out: Path | None,
        meta: dict[str, Any], resume: bool = True, show_progress: bool = True, logdir: str | Path | None = None,
        on_save: Callable[[Fitter], None] | None = None, name: str = "train", prefix: str = "",
        trainer_extra: dict[str, Any] | None = None, ddp_find_unused: bool = True) -> nn.Module:
    """Train `model` for `cfg.steps` on batches `sample(rng)` and return it in eval mode (with the EMA weights
    when `cfg.ema_decay` > 0).

    Batches come from one generator seeded with `cfg.seed` (or one per step, `cfg.rng_per_step`); torch is not
    reseeded on a fresh run. The trainer state keeps both RNGs, so an interrupted run resumed from `out` ends with
    the same weights as an uninterrupted one. `out` is a
    checkpoint directory (`model.save(out, meta=..., trainer_state=...)`, atomic), written every `save_every`
    steps and at the end; with `resume`, a trainer state found there is continued (the model must already have
    its architecture). `trainer_extra` is stored in the trainer state beside the Fitter's; TensorBoard scalars go
    to `logdir` (default OUT.tb beside the checkpoint), named `prefix` + metric.

    Under torchrun (WORLD_SIZE > 1) every rank draws the same global batch and trains on its slice, the
    gradients averaged by DDP (so N ranks step as one process on the whole batch would); torch is reseeded per
    (seed, step, rank) for in-forward noise; rank 0 alone saves (the others wait at a barrier) and logs; a
    dead or stalled rank ends the others with one MetabonkError line. `ddp_find_unused=False` tells DDP that every
    parameter gets a gradient every step (faster; a model that skips some would then fail at its second step)."""
    info = distributed.setup(cfg.device)
    device = info.device if info is not None else resolve_device(cfg.device)
    main = info is None or info.is_main
    show_progress = show_progress and main
    model.to(device)
    if logdir is None and out is not None:
        logdir = out.parent / f"{out.name}.tb"
    logger = ScalarLogger(logdir if main else None)
    fitter = Fitter(model, cfg, logger if main else None, prefix)
    state = load_trainer_state(out) if resume and out is not None and (out / "config.json").is_file() else None
    rng = np.random.default_rng(cfg.seed)
    if state is not None:
        load_weights(out, model, device)
        fitter.load_state_dict(state)
        if "torch_rng" in state:
            _set_rng_state(state["torch_rng"])
            rng.bit_generator.state = state["numpy_rng"]
        else:  # a trainer state written before fit: reseed from the step, as the former trainers did
            torch.manual_seed(cfg.seed + fitter.step_count)
            rng = np.random.default_rng([cfg.seed, fitter.step_count])
    if info is not None:
        fitter.forward_module, fitter.dist = distributed.wrap(model, info, ddp_find_unused), info
    # the checkpoint writer moves a log folder inside `out`: flush it before each save
    logs_inside = out is not None and logdir is not None and Path(logdir).resolve().is_relative_to(out.resolve())
    meta = {**meta, "fit": asdict(cfg)}

    def save() -> None:
        if out is None:
            return
        if not main:
            distributed.barrier(info)
            return
        if logs_inside:
            logger.close()
        trainer_state = {**(trainer_extra or {}), **fitter.state_dict(full=False), "torch_rng": _rng_state(),
                         "numpy_rng": rng.bit_generator.state}
        fitter.ema_model.save(out, meta={**meta, "step": fitter.step_count},  # type: ignore[operator]
                              trainer_state=trainer_state)
        if on_save is not None:
            on_save(fitter)
        distributed.barrier(info)

    def next_batch(step_rng: np.random.Generator) -> Any:
        if info is None:
            return sample(step_rng)
        torch.manual_seed(distributed.step_seed(cfg.seed, fitter.step_count, info.rank))
        return distributed.shard(sample(step_rng), info)

    model.train()
    status = ""
    try:
        with progress_bar(name, cfg.steps, disable=not show_progress) as advance:
            advance(fitter.step_count)
            while fitter.step_count < cfg.steps:
                step_rng = np.random.default_rng((cfg.seed, fitter.step_count)) if cfg.rng_per_step else rng
                fitter.step(next_batch(step_rng))
                if fitter.last_logged_step == fitter.step_count:
                    status = f"loss {fitter.last['loss']:.4f}"
                if fitter.step_count % cfg.save_every == 0 and fitter.step_count < cfg.steps:
                    save()
                advance(1, status=status)
        save()
    except RuntimeError as e:
        if info is None or not distributed.is_peer_failure(e):  # a model's own error stays as it was
            raise
        logger.close()
        raise distributed.failure(info, fitter.step_count, e) from e
    logger.close()
    if fitter.last and show_progress:
        last = fitter.last["loss"]
        console.print(f"{name}: {fitter.step_count} steps, last loss {last:.4f}" + (f", saved to {out}" if out
                                                                                      else ""))
    if cfg.ema_decay > 0:
        model.load_state_dict(fitter.ema_model.state_dict())
    return model.eval()
