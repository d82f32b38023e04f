"""U-Net building blocks: Fourier noise features, adaptive group norm, residual blocks, resampling."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def groups_for(channels: int, num_groups: int) -> int:
    """The largest group count ≤ num_groups that divides `channels`."""
    g = min(num_groups, channels)
    while channels % g:
        g -= 1
    return g


class FourierFeatures(nn.Module):
    """Fixed random Fourier features of a scalar (the EDM noise input c_noise)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"FourierFeatures needs an even dim, got {dim}")
        self.register_buffer("weight", torch.randn(1, dim // 2))

    def forward(self, x_B: torch.Tensor) -> torch.Tensor:
        f = 2 * math.pi * x_B.unsqueeze(1) * self.weight
        return torch.cat([f.cos(), f.sin()], dim=1)


class AdaGroupNorm(nn.Module):
    """Group norm without its own affine; scale and shift come from the conditioning vector."""

    def __init__(self, channels: int, cond_channels: int, num_groups: int) -> None:
        super().__init__()
        self.num_groups = groups_for(channels, num_groups)
        self.linear = nn.Linear(cond_channels, 2 * channels)

    def forward(self, x: torch.Tensor, cond_BC: torch.Tensor) -> torch.Tensor:
        x = F.group_norm(x, self.num_groups, eps=1e-5)
        scale, shift = self.linear(cond_BC)[:, :, None, None].chunk(2, dim=1)
        return x * (1 + scale) + shift


class ResBlock(nn.Module):
    """norm → SiLU → conv, twice, each norm modulated by the conditioning; 1x1 skip when widths differ."""

    def __init__(self, in_ch: int, out_ch: int, cond_channels: int, num_groups: int) -> None:
        super().__init__()
        self.norm1 = AdaGroupNorm(in_ch, cond_channels, num_groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = AdaGroupNorm(out_ch, cond_channels, num_groups)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity

    def forward(self, x: torch.Tensor, cond_BC: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x, cond_BC)))
        h = self.conv2(F.silu(self.norm2(h, cond_BC)))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Halve the resolution with a stride-2 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
