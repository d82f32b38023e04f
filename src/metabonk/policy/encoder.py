"""Pixel encoder: a small strided CNN from uint8 HxWx3 frames to features (plus an optional state MLP)."""

from __future__ import annotations

import torch
from torch import nn

from metabonk.common.errors import MetabonkError
from metabonk.policy.config import PolicyConfig

BACKGROUND_GAIN = 16.0
"""Amplification of what differs from the background under pixel_norm='background' (clamped to ±0.5)."""


def normalise_pixels(pixels_BHWC: torch.Tensor, mode: str = "unit") -> torch.Tensor:
    """uint8 frames [B,H,W,3] -> float [B,3,H,W] in [-0.5, 0.5].

    'unit' maps 0..255 linearly. 'background' subtracts each frame's per-channel median (the flat background
    of an Atari screen) and amplifies the rest: Pong's ball and paddles cover ~1 % of a 64×64 frame, and on
    the 'unit' scale behaviour cloning did not learn to read them (docs/demo.md)."""
    x = pixels_BHWC.permute(0, 3, 1, 2).float() * (1.0 / 255.0)
    if mode == "background":
        bg = x[:, :, ::4, ::4].flatten(2).median(-1).values[..., None, None]  # a 1/16 sample is enough, and faster
        return ((x - bg) * BACKGROUND_GAIN).clamp(-0.5, 0.5)
    return x - 0.5


class PixelEncoder(nn.Module):
    """uint8 frames [B,H,W,3] -> features [B,feature_dim]; a `state` vector, when configured, is added in."""

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.pixel_norm = cfg.pixel_norm
        layers: list[nn.Module] = []
        c_in, side = 3, cfg.image_size
        for i, c in enumerate(cfg.channels):
            k, s = ((8, 4), (4, 2), (3, 1))[i] if i < 3 else (3, 2)
            if side < k:
                raise MetabonkError(f"{cfg.image_size}px frames are too small for the policy's {len(cfg.channels)} "
                                    f"conv layers (layer {i + 1} sees {side}px, its kernel is {k}); use larger "
                                    "frames or fewer `channels`")
            side = (side - k) // s + 1
            layers += [nn.Conv2d(c_in, c, k, s), nn.SiLU()]
            c_in = c
        self.conv = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            n_flat = self.conv(torch.zeros(1, 3, cfg.image_size, cfg.image_size)).shape[1]
        self.proj = nn.Sequential(nn.Linear(n_flat, cfg.feature_dim), nn.SiLU())
        self.state_proj = (
            nn.Sequential(nn.Linear(cfg.state_dim, cfg.feature_dim), nn.SiLU()) if cfg.state_dim > 0 else None
        )

    def forward(self, pixels_BHWC: torch.Tensor, state_BD: torch.Tensor | None = None) -> torch.Tensor:
        feat = self.proj(self.conv(normalise_pixels(pixels_BHWC, self.pixel_norm)))
        if self.state_proj is not None and state_BD is not None:
            feat = feat + self.state_proj(state_BD.float())
        return feat
