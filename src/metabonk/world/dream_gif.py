"""Dream beside reality: roll the world model from a real episode's first frames with the real
actions and write a GIF of real | dream side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from metabonk.common.errors import MetabonkError
from metabonk.world.dream_env import DreamEnv
from metabonk.world.world_model import WorldModel


def dream_beside_real(
    model: WorldModel, obs: np.ndarray, actions: np.ndarray, steps: int, seed: int = 0, kernels: str = "eager"
) -> tuple[np.ndarray, np.ndarray]:
    """(real, dream) uint8 [steps,H,W,3] from episode arrays obs [T+1,...] and actions [T]."""
    k = model.config.num_context
    steps = min(steps, len(actions) - k + 1)
    if steps < 1:
        raise MetabonkError(f"the episode is too short to dream from {k} context frames")
    env = DreamEnv(model, seed=seed, kernels=kernels)
    env.reset(torch.from_numpy(obs[None, :k]), torch.from_numpy(actions[None, :k]))
    dream = [env.step(torch.tensor([int(actions[k - 1 + t])]))[0][0].cpu().numpy() for t in range(steps)]
    return np.asarray(obs[k : k + steps]), np.stack(dream)


def write_side_by_side_gif(
    real: np.ndarray, dream: np.ndarray, out: str | Path, scale: int = 4, fps: int = 15
) -> Path:
    """GIF with real on the left and dream on the right, upscaled by `scale`."""
    from PIL import Image

    gap = np.full((real.shape[1], 2, 3), 255, np.uint8)
    frames = [
        np.concatenate([r, gap, d], axis=1).repeat(scale, 0).repeat(scale, 1)
        for r, d in zip(real, dream, strict=True)
    ]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    imgs = [Image.fromarray(f) for f in frames]
    imgs[0].save(out, save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
    return out
