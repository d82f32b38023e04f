"""Trainer of the world model: the shared `fit` loop on denoising + reward/termination losses (AdamW, warm-up,
EMA weights in the checkpoint), resumable, logged. Under `torchrun --nproc-per-node N` it trains
data-parallel: `TrainConfig.batch` is then the global batch, split evenly over the ranks."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from metabonk.common.checkpoint import load_trainer_state, read_config
from metabonk.common.device import resolve_device
from metabonk.common.errors import MetabonkError
from metabonk.train import distributed
from metabonk.train.fit import FitConfig, fit
from metabonk.world.config import WorldConfig, diamond_atari_config, scale_sigmas
from metabonk.world.data import WindowData, latent_action_labels
from metabonk.world.denoiser import diffusion_target, frames_to_float
from metabonk.world.world_model import KIND, WorldModel, world_config_from_dict


@dataclass
class TrainConfig:
    """How to train; the model's shape is a WorldConfig."""

    steps: int = 20_000
    """Total optimizer steps (resume continues up to this)."""
    batch: int = 32
    """Windows per optimizer step (the global batch under torchrun: it must divide by the number of ranks)."""
    lr: float = 1e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 100
    grad_clip: float = 1.0
    holdout: float = 0.1
    """Fraction of episodes held out from training (by episode; evaluation uses the same split)."""
    terminal_fraction: float = 0.1
    """Share of each batch drawn among episode-ending windows (termination is rare)."""
    log_every: int = 50
    save_every: int = 1000
    seed: int = 0
    device: str = "auto"
    action_source: str = "real"
    """'real' (store key action), 'idm' (action_idm) or 'latent' (codes from --lam)."""
    lam: str | None = None
    """LAM checkpoint that labels transitions when action_source == 'latent'."""
    ema_decay: float = 0.999
    """Exponential moving average of the weights (0 = off), with the usual warm-up min(decay, (1+s)/(10+s)).
    The checkpoint's weights are the average: diffusion samples from averaged weights are far less noisy."""
    bf16: bool = False
    """Run the forward under bfloat16 autocast (weights, optimiser and EMA stay fp32): the GPU speed path."""


def _model_config(
    store_num_actions: int | None,
    data: WindowData,
    frame_size: int,
    base: WorldConfig | None,
    action_source: str,
    lam: str | None,
) -> WorldConfig:
    cfg = copy.deepcopy(base) if base is not None else diamond_atari_config()
    cfg.frame_size = frame_size
    cfg.action_source = action_source
    if action_source == "latent" and lam is not None:
        cfg.num_actions = int(read_config(lam, kind="lam")["config"]["vq"]["num_codes"])
    elif store_num_actions is not None:
        cfg.num_actions = int(store_num_actions)
    cfg.num_actions = max(cfg.num_actions, data.num_actions_seen)
    return cfg


def target_std(
    data: WindowData, target: str, rng: np.random.Generator, context_noise_max: float, windows: int = 2048
) -> float:
    """Std of the diffusion target over random training windows (EDM's σ_data), with the training-time context
    noise the delta target includes, kept in [0.02, 0.5]."""
    obs = frames_to_float(data.sample(windows, rng)["obs"][:, -2:])
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    sigma = torch.rand(obs.shape[0], 1, 1, 1, generator=g) * context_noise_max
    last = obs[:, 0] + sigma * torch.randn(obs[:, 0].shape, generator=g)
    return float(diffusion_target(obs, target, last_context=last).std().clamp(0.02, 0.5))


def calibrate(config: WorldConfig, data: WindowData, seed: int) -> None:
    """Measure what a fresh model's scales should be on its first training data, once: EDM's σ_data (and the σ
    ranges with it) from the diffusion target's std, the reward scale from the size of the rewards paid."""
    if not config.auto_sigma_data:
        return
    std = target_std(data, config.target, np.random.default_rng([seed, 1]), config.edm.context_noise_max)
    scale_sigmas(config, std)
    config.reward_scale = reward_unit(data)
    config.auto_sigma_data = False  # measured once; resumes and loads keep these values


def reward_unit(data: WindowData) -> float:
    """The typical size of a reward when one is paid: the RMS of the data's non-zero per-step rewards (1.0 when
    none is paid). Not the std of all steps: on a sparse game (Scroll's gems pay 1 on ~1 % of steps) the std is
    ~0.1 and would make rare rewards targets of ~10 that swamp the termination loss sharing the encoder (the
    online loop's agent fell to random level); Arena's dense ~0.01-0.05 rewards get about the same unit either way."""
    r = torch.cat(data.reward).float() if data.reward else torch.zeros(0)
    paid = r[r.abs() > 1e-8]
    return float(paid.pow(2).mean().sqrt()) if len(paid) else 1.0


def train_world(
    data_dir: str | Path,
    out: str | Path,
    train: TrainConfig | None = None,
    model_config: WorldConfig | None = None,
    resume: bool = True,
    logdir: str | Path | None = None,
    show_progress: bool = True,
) -> WorldModel:
    """Train (or resume) a world model on an episode store and save it to `out` (kind "world")."""
    from metabonk.data.store import EpisodeStore

    tc = train or TrainConfig()
    out = Path(out)
    info = distributed.setup(tc.device)  # None unless launched by torchrun
    device = info.device if info is not None else resolve_device(tc.device)
    if info is not None and tc.batch % info.world_size:
        raise MetabonkError(f"--batch {tc.batch} must divide by the {info.world_size} ranks (it is the global batch)")
    torch.manual_seed(tc.seed)
    store = EpisodeStore.open(data_dir)
    train_eps, _ = store.split(tc.holdout, seed=tc.seed)
    if tc.action_source == "latent" and tc.lam is None:
        raise MetabonkError("--actions latent needs --lam LAM_CKPT to label the transitions")
    labels = latent_action_labels(store, train_eps, tc.lam, device) if tc.action_source == "latent" else None

    state = load_trainer_state(out) if resume and (out / "config.json").is_file() else None
    if state is not None:
        model = WorldModel(world_config_from_dict(read_config(out, kind=KIND)["config"]))
    data = WindowData(
        store,
        train_eps,
        (model_config or diamond_atari_config()).num_context if state is None else model.config.num_context,
        tc.action_source,
        labels,
    )
    if state is None:
        cfg = _model_config(store.num_actions, data, store.frame_size, model_config, tc.action_source, tc.lam)
        calibrate(cfg, data, tc.seed)
        model = WorldModel(cfg)
    if data.num_actions_seen > model.config.num_actions:
        raise MetabonkError(
            f"the data has action ids up to {data.num_actions_seen - 1} but the model knows "
            f"{model.config.num_actions} actions"
        )
    fc = FitConfig(steps=tc.steps, lr=tc.lr, weight_decay=tc.weight_decay, warmup_steps=tc.warmup_steps,
                   grad_clip=tc.grad_clip, ema_decay=tc.ema_decay, log_every=tc.log_every,
                   save_every=tc.save_every, seed=tc.seed, device=tc.device, autocast="bf16" if tc.bf16 else None)
    # the absolute path: `eval world` / `bench adaptive` leave these episodes out only when they recognise the store
    meta = {"data": str(Path(data_dir).resolve()), "train_episodes": train_eps, "train": asdict(tc),
            "ema_decay": tc.ema_decay}
    model = fit(model.to(device), lambda rng: data.sample(tc.batch, rng, tc.terminal_fraction), fc, out, meta,
                resume=state is not None, show_progress=show_progress, logdir=logdir, name="train world",
                ddp_find_unused=False)  # every world-model parameter gets a gradient every step
    return model  # type: ignore[return-value]
