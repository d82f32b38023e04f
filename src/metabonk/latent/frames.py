"""Frame helpers of the latent models: scaling, windowing a clip, PSNR, movement classes of actions."""

from __future__ import annotations

import numpy as np
import torch

from metabonk.envs.arena.spec import NUM_ACTIONS, direction_of

ARENA_NUM_ACTIONS = NUM_ACTIONS
# ALE minimal action set of Pong: NOOP, FIRE, RIGHT (up), LEFT (down), RIGHTFIRE, LEFTFIRE.
PONG_MOVEMENT = (0, 0, 1, 2, 1, 2)
PONG_PADDLE_RAM = 51
"""RAM byte of the player (right) paddle's height in ALE Pong (the store keeps RAM bytes / 255 as `state`)."""


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] (or float in [0,1]) -> float [..., 3, H, W] in [-1, 1]."""
    x = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
    return (x * 2 - 1).movedim(-1, -3).contiguous()


def clip_windows(clip_THWC: torch.Tensor, context: int, future: int = 0) -> torch.Tensor:
    """The T transitions of a clip of T+1 frames as windows [T, context+2+future, H, W, 3]: x_{t-context} ..
    x_{t+1+future}, with x_0 repeated before the start and x_T after the end."""
    steps = clip_THWC.shape[0] - 1
    t = torch.arange(steps, device=clip_THWC.device)
    offsets = torch.arange(-context, 2 + future, device=clip_THWC.device)
    idx = (t[:, None] + offsets[None, :]).clamp(0, steps)
    return clip_THWC[idx]


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-item PSNR in dB of images in [0,1] with shape [B, ...]."""
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


def movement_map(env: str, num_actions: int) -> np.ndarray:
    """Movement class of each action id: Arena's move direction (cards count as stand); Pong up/down/none."""
    if env.startswith("arena") and num_actions == ARENA_NUM_ACTIONS:
        return np.array([direction_of(a) for a in range(num_actions)], dtype=np.int64)
    if "pong" in env.lower() and num_actions == len(PONG_MOVEMENT):
        return np.array(PONG_MOVEMENT, dtype=np.int64)
    return np.arange(num_actions, dtype=np.int64)
