"""EDM denoiser D(x; σ) = c_skip·x + c_out·F(c_in·x, c_noise) for the next frame (or, with target 'delta', for
its difference from the last context frame) given past frames and actions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from metabonk.world.config import WorldConfig
from metabonk.world.unet import InnerModel


@dataclass
class Conditioners:
    """EDM preconditioning factors for a batch of noise levels, shaped [B,1,1,1] (c_noise: [B])."""

    c_in: torch.Tensor
    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_noise: torch.Tensor


def frames_to_float(frames_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, C] → float [..., C, H, W] in [-1, 1]."""
    return frames_uint8.movedim(-1, -3).float().div(127.5).sub(1.0)


def frames_to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """float [..., C, H, W] in [-1, 1] → uint8 [..., H, W, C]."""
    return frames.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).movedim(-3, -1)


def diffusion_target(obs_BTCHW: torch.Tensor, target: str, last_context: torch.Tensor | None = None) -> torch.Tensor:
    """What the diffusion models for the last frame of a window: the frame itself, or its change from the last
    context frame *as the model sees it* (`last_context`, noisy in training): the dream adds the delta to the
    frame it was given, so learning x_{t+1} - noisy x_t teaches the model to remove noise from its own dreams
    instead of carrying it forward."""
    if target == "delta":
        return obs_BTCHW[:, -1] - (obs_BTCHW[:, -2] if last_context is None else last_context)
    if target == "frame":
        return obs_BTCHW[:, -1]
    raise ValueError(f"world model target must be 'delta' or 'frame', got '{target}'")


class Denoiser(nn.Module):
    """Predicts the clean target (next frame, or its change) from a noisy one; trained with EDM's weighted
    denoising loss."""

    def __init__(self, config: WorldConfig) -> None:
        super().__init__()
        self.config = config
        self.inner = InnerModel(config)

    def conditioners(self, sigma_B: torch.Tensor) -> Conditioners:
        sd = self.config.edm.sigma_data
        s = sigma_B.reshape(-1, 1, 1, 1)
        c_in = 1 / (s**2 + sd**2).sqrt()
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_noise = sigma_B.log() / 4
        return Conditioners(c_in, c_skip, c_out, c_noise)

    @staticmethod
    def context_c_noise(context_sigma_B: torch.Tensor) -> torch.Tensor:
        return (context_sigma_B + 1e-3).log() / 4

    def denoise(
        self,
        noisy_BCHW: torch.Tensor,
        sigma_B: torch.Tensor,
        context_BKCHW: torch.Tensor,
        actions_BK: torch.Tensor,
        context_sigma_B: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """D(x; σ): the estimate of the clean target (next frame, or its change from the last context frame)."""
        cs = self.conditioners(sigma_B)
        if context_sigma_B is None:
            context_sigma_B = torch.zeros_like(sigma_B)
        out = self.inner(
            noisy_BCHW * cs.c_in, cs.c_noise, context_BKCHW, actions_BK, self.context_c_noise(context_sigma_B)
        )
        return torch.addcmul(cs.c_skip * noisy_BCHW, cs.c_out, out)  # c_skip x + c_out F in two passes, not three

    def sample_sigma(self, n: int, device: torch.device) -> torch.Tensor:
        e = self.config.edm
        s = (torch.randn(n, device=device) * e.scale + e.loc).exp()
        return s.clamp(e.sigma_min_train, e.sigma_max_train)

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """batch: obs float [B,k+1,C,H,W] in [-1,1], action long [B,k]. Predicts obs[:, k] from the rest."""
        e, k = self.config.edm, self.config.num_context
        obs, actions = batch["obs"], batch["action"][:, :k]
        B = obs.shape[0]
        context_sigma = torch.rand(B, device=obs.device) * e.context_noise_max
        context = obs[:, :k] + context_sigma.reshape(B, 1, 1, 1, 1) * torch.randn_like(obs[:, :k])
        target = diffusion_target(obs, self.config.target, last_context=context[:, -1])
        sigma = self.sample_sigma(B, obs.device)
        cs = self.conditioners(sigma)
        offset = e.sigma_offset_noise * torch.randn(B, target.shape[1], 1, 1, device=obs.device)
        noisy = target + offset + sigma.reshape(B, 1, 1, 1) * torch.randn_like(target)
        out = self.inner(noisy * cs.c_in, cs.c_noise, context, actions, self.context_c_noise(context_sigma))
        # Train F to hit the rescaled residual; equivalent to EDM's λ(σ)-weighted loss on D.
        goal = (target - cs.c_skip * noisy) / cs.c_out
        loss = F.mse_loss(out, goal)
        return loss, {"loss/denoise": loss.detach()}
