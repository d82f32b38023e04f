"""The denoiser's network: conditioning (noise level + past actions) and a U-Net over stacked frames."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metabonk.world.blocks import Downsample, FourierFeatures, GroupNorm, ResBlock, Upsample, groups_for
from metabonk.world.config import WorldConfig


class UNet(nn.Module):
    """Res-blocks at each level, stride-2 down, nearest up, skip connections concatenated on the way up."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        channels: tuple[int, ...],
        depths: tuple[int, ...],
        cond_channels: int,
        num_groups: int,
    ) -> None:
        super().__init__()
        if len(channels) != len(depths):
            raise ValueError("unet.channels and unet.depths need the same length")
        self.conv_in = nn.Conv2d(in_ch, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = [channels[0]]
        c = channels[0]
        for level, (ch, depth) in enumerate(zip(channels, depths, strict=True)):
            blocks = nn.ModuleList()
            for _ in range(depth):
                blocks.append(ResBlock(c, ch, cond_channels, num_groups))
                c = ch
                skips.append(c)
            self.down.append(blocks)
            last = level == len(channels) - 1
            self.downsample.append(nn.Identity() if last else Downsample(c))
            if not last:
                skips.append(c)
        self.mid = nn.ModuleList([ResBlock(c, c, cond_channels, num_groups) for _ in range(2)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(channels))):
            ch, depth = channels[level], depths[level]
            blocks = nn.ModuleList()
            for _ in range(depth + 1):
                blocks.append(ResBlock(c + skips.pop(), ch, cond_channels, num_groups))
                c = ch
            self.up.append(blocks)
            self.upsample.append(Upsample(c) if level > 0 else nn.Identity())
        self.norm_out = GroupNorm(groups_for(c, num_groups), c)
        self.conv_out = nn.Conv2d(c, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, cond_BC: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        hs = [h]
        for blocks, down in zip(self.down, self.downsample, strict=True):
            for block in blocks:
                h = block(h, cond_BC)
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        for block in self.mid:
            h = block(h, cond_BC)
        for blocks, up in zip(self.up, self.upsample, strict=True):
            for block in blocks:
                h = block(torch.cat([h, hs.pop()], dim=1), cond_BC)
            h = up(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class InnerModel(nn.Module):
    """F_θ of EDM: maps (c_in·x_noisy, context frames, c_noise, context actions) to the network output."""

    def __init__(self, config: WorldConfig) -> None:
        super().__init__()
        u, k, c = config.unet, config.num_context, config.img_channels
        self.noise_emb = FourierFeatures(u.cond_channels)
        self.context_noise_emb = FourierFeatures(u.cond_channels)
        self.act_emb = nn.Embedding(config.num_actions, u.cond_channels)
        self.act_proj = nn.Linear(k * u.cond_channels, u.cond_channels)
        self.cond_proj = nn.Sequential(
            nn.Linear(u.cond_channels, u.cond_channels),
            nn.SiLU(),
            nn.Linear(u.cond_channels, u.cond_channels),
        )
        self.unet = UNet((k + 1) * c, c, u.channels, u.depths, u.cond_channels, u.num_groups)

    def forward(
        self,
        noisy_BCHW: torch.Tensor,
        c_noise_B: torch.Tensor,
        context_BKCHW: torch.Tensor,
        actions_BK: torch.Tensor,
        c_noise_context_B: torch.Tensor,
    ) -> torch.Tensor:
        cond = self.conditioning(c_noise_B, actions_BK, c_noise_context_B)
        x = torch.cat([noisy_BCHW, context_BKCHW.flatten(1, 2)], dim=1)
        return self.unet(x, cond)

    def conditioning(
        self, c_noise_B: torch.Tensor, actions_BK: torch.Tensor, c_noise_context_B: torch.Tensor
    ) -> torch.Tensor:
        """The conditioning vector [B, cond_channels] every adaptive group norm is modulated by."""
        act = self.act_proj(self.act_emb(actions_BK).reshape(actions_BK.shape[0], -1))
        return self.cond_proj(self.noise_emb(c_noise_B) + self.context_noise_emb(c_noise_context_B) + act)
