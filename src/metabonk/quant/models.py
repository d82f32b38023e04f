"""The quantizable model kinds (policy, world, lam, idm): their class, held-out probe frames and a probe output.

Probe frames come from Arena rollouts under the random policy (seeded; no training data is reused), or from an
episode store when one is given. A probe output is the tensor whose error the sensitivity report measures: the
policy's move logits over a rollout (hidden state carried), the world model's denoiser output at each σ of its
sampler schedule from fixed noise, the LAM's pre-quantisation latents, the IDM's logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metabonk.common.checkpoint import read_config
from metabonk.common.errors import MetabonkError

KINDS = ("policy", "world", "lam", "idm")


def model_class(kind: str) -> Any:
    """The Checkpointed class of a model kind."""
    if kind == "policy":
        from metabonk.policy.agent import Agent

        return Agent
    if kind == "world":
        from metabonk.world.world_model import WorldModel

        return WorldModel
    if kind == "lam":
        from metabonk.latent.lam import LatentActionModel

        return LatentActionModel
    if kind == "idm":
        from metabonk.latent.idm import InverseDynamicsModel

        return InverseDynamicsModel
    raise MetabonkError(f"cannot quantize a '{kind}' checkpoint (quantizable kinds: {', '.join(KINDS)})")


def checkpoint_kind(path: str | Path) -> str:
    kind = str(read_config(path).get("kind"))
    model_class(kind)
    return kind


def frame_size(model: nn.Module, kind: str) -> int:
    cfg = model.config  # type: ignore[attr-defined]
    return int(cfg.image_size if kind == "policy" else cfg.frame_size)


@dataclass
class Rollout:
    """Held-out frames uint8 [N,T,H,W,3] and the actions taken at them int64 [N,T]."""

    frames: torch.Tensor
    actions: torch.Tensor


def arena_rollout(n: int, steps: int, size: int, seed: int) -> Rollout:
    """`n` Arena games of `steps` frames under the seeded random policy."""
    from metabonk.envs import make_env

    env = make_env("arena", num_envs=n, size=size, seed=seed)
    rng = np.random.default_rng(seed)
    try:
        obs, _ = env.reset(seed=seed)
        frames, actions = [], []
        for _ in range(steps):
            a = rng.integers(0, 18, size=n)  # movement actions; the menus are left to autoreset's defaults
            frames.append(np.asarray(obs["pixels"]))
            actions.append(a)
            obs, *_ = env.step(a)
    finally:
        env.close()
    return Rollout(torch.from_numpy(np.stack(frames, 1)), torch.from_numpy(np.stack(actions, 1)).long())


def store_rollout(path: str | Path, n: int, steps: int, seed: int) -> Rollout:
    """`n` windows of `steps` frames from an episode store (actions: 'action', else zeros)."""
    from metabonk.data.store import EpisodeStore

    store = EpisodeStore.open(path)
    rng = np.random.default_rng(seed)
    keys = ("obs", "action") if store.has_actions else ("obs",)
    w = store.sample_windows(n, steps - 1, rng, keys=keys)
    frames = torch.from_numpy(np.asarray(w["obs"])[:, :steps])
    acts = torch.from_numpy(np.asarray(w["action"])[:, :steps]).long() if "action" in w else \
        torch.zeros(frames.shape[:2], dtype=torch.long)
    return Rollout(frames, acts)


def probe_rollout(model: nn.Module, kind: str, n: int, steps: int, seed: int,
                  data: str | Path | None = None) -> Rollout:
    if data is not None:
        r = store_rollout(data, n, steps, seed)
        if r.frames.shape[2] != frame_size(model, kind):
            raise MetabonkError(f"{data} holds {r.frames.shape[2]}px frames; the model needs "
                                f"{frame_size(model, kind)}px")
        return r
    return arena_rollout(n, steps, frame_size(model, kind), seed)


def _windows(frames: torch.Tensor, window: int) -> torch.Tensor:
    """All windows of `window` consecutive frames of each game: [N*(T-window+1), window, H, W, 3]."""
    return frames.unfold(1, window, 1).permute(0, 1, 5, 2, 3, 4).flatten(0, 1)


@torch.no_grad()
def policy_logits(agent: Any, r: Rollout) -> torch.Tensor:
    """Move logits [N,T,A] of a rollout, hidden state carried step by step (as in play)."""
    dev = agent.reflex.device
    h = agent.initial_state(r.frames.shape[0], dev)
    out = []
    for t in range(r.frames.shape[1]):
        logits, _, _, h = agent.step({"pixels": r.frames[:, t].to(dev)}, h)
        out.append(logits.float().cpu())
    return torch.stack(out, 1)


def world_inputs(world: Any, r: Rollout, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Context frames float [B,k,C,H,W], actions [B,k] and unit noise [B,C,H,W] from a rollout's first frames."""
    from metabonk.world.denoiser import frames_to_float

    k = world.config.num_context
    ctx = frames_to_float(r.frames[:, :k]).to(world.device)
    acts = r.actions[:, :k].clamp(max=world.config.num_actions - 1).to(world.device)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(ctx[:, 0].shape, generator=g).to(world.device)
    return ctx, acts, noise


@torch.no_grad()
def world_denoised(world: Any, r: Rollout, seed: int = 0) -> torch.Tensor:
    """The denoiser's output at each σ of the sampler schedule, from the same noisy input: [S,B,C,H,W]."""
    ctx, acts, noise = world_inputs(world, r, seed)
    sig = world.sampler.sigmas()[:-1]
    ones = torch.ones(ctx.shape[0], device=ctx.device)
    return torch.stack([world.denoiser.denoise(noise * s, s * ones, ctx, acts).float().cpu() for s in sig])


@torch.no_grad()
def probe_output(model: Any, kind: str, r: Rollout, seed: int = 0) -> torch.Tensor:
    """The tensor the sensitivity report compares between a quantized model and its fp32 original."""
    if kind == "policy":
        return policy_logits(model, r)
    if kind == "world":
        return world_denoised(model, r, seed)
    if kind == "lam":
        return model.latents(_windows(r.frames, model.config.window)).float().cpu()
    return model.logits(_windows(r.frames, model.config.window)).float().cpu()


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out - ref‖ / ‖ref‖ over the whole probe."""
    return float((out - ref).norm() / ref.norm().clamp_min(1e-12))
