"""Pixel encoder: a small strided CNN from uint8 HxWx3 frames to features (plus an optional state MLP)."""

from __future__ import annotations

import torch
from torch import nn

from metabonk.policy.config import PolicyConfig


class PixelEncoder(nn.Module):
    """uint8 frames [B,H,W,3] -> features [B,feature_dim]; a `state` vector, when configured, is added in."""

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(cfg.channels):
            k, s = ((8, 4), (4, 2), (3, 1))[i] if i < 3 else (3, 2)
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
        x = pixels_BHWC.permute(0, 3, 1, 2).float() * (1.0 / 255.0) - 0.5
        feat = self.proj(self.conv(x))
        if self.state_proj is not None and state_BD is not None:
            feat = feat + self.state_proj(state_BD.float())
        return feat
