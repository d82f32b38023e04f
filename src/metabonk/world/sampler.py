"""Few-step EDM samplers (Euler, Heun) over a Karras σ schedule, conditioned on past frames and actions; and an
adaptive-compute variant (the seeds' "mixture of depths") that spends the full schedule only on the frames its
first step finds hard."""

from __future__ import annotations

import math

import torch

from metabonk.world.config import SamplerConfig
from metabonk.world.denoiser import Denoiser


def karras_sigmas(
    num_steps: int, sigma_min: float, sigma_max: float, rho: float, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """σ_0 > ... > σ_{n-1} on Karras et al.'s ρ-schedule, with a final 0 appended (n+1 values)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    ramp = torch.linspace(0, 1, num_steps, device=device, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()


def hard_count(batch: int, hard_fraction: float) -> int:
    """How many of `batch` frames the adaptive sampler gives the full schedule: ceil(hard_fraction · batch)."""
    return min(batch, math.ceil(hard_fraction * batch - 1e-9))


class DiffusionSampler:
    """Draws the next frame: start from σ_max noise, integrate the probability-flow ODE in few steps."""

    def __init__(self, denoiser: Denoiser, config: SamplerConfig) -> None:
        if config.order not in (1, 2):
            raise ValueError(f"sampler order must be 1 (Euler) or 2 (Heun), got {config.order}")
        self.denoiser = denoiser
        self.config = config
        self._sigmas: dict[int, list[float]] = {}

    def sigmas(self, num_steps: int | None = None) -> list[float]:
        """The schedule as Python floats (no device syncs inside the loop; CUDA-graph friendly)."""
        n = num_steps or self.config.num_steps
        if n not in self._sigmas:
            c = self.config
            self._sigmas[n] = karras_sigmas(n, c.sigma_min, c.sigma_max, c.rho).tolist()
        return self._sigmas[n]

    def _start(
        self, context_BKCHW: torch.Tensor, num_steps: int | None, noise_BCHW: torch.Tensor | None
    ) -> tuple[list[float], torch.Tensor, torch.Tensor]:
        """The schedule, the starting sample σ_max · noise [B,C,H,W] and a ones [B] to broadcast σ with."""
        B, _, C, H, W = context_BKCHW.shape
        sigmas = self.sigmas(num_steps)
        if noise_BCHW is None:
            noise_BCHW = torch.randn(B, C, H, W, device=context_BKCHW.device, dtype=context_BKCHW.dtype)
        x = noise_BCHW * sigmas[0]
        return sigmas, x, torch.ones(B, device=x.device, dtype=x.dtype)

    @torch.no_grad()
    def sample(
        self,
        context_BKCHW: torch.Tensor,
        actions_BK: torch.Tensor,
        num_steps: int | None = None,
        noise_BCHW: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The next frame, float [B,C,H,W] in [-1,1]; `noise_BCHW` (unit Gaussian) fixes the draw."""
        sigmas, x, ones = self._start(context_BKCHW, num_steps, noise_BCHW)
        for i in range(len(sigmas) - 1):
            s, s_next = sigmas[i], sigmas[i + 1]
            denoised = self.denoiser.denoise(x, s * ones, context_BKCHW, actions_BK)
            # the Euler step x + (x - D) / s * (s_next - s), written as one elementwise pass instead of four
            x_next = torch.lerp(x, denoised, 1 - s_next / s)
            if self.config.order == 2 and s_next > 0:
                d = (x - denoised) / s
                denoised_2 = self.denoiser.denoise(x_next, s_next * ones, context_BKCHW, actions_BK)
                d_2 = (x_next - denoised_2) / s_next
                x_next = x + (d + d_2) / 2 * (s_next - s)
            x = x_next
        if self.denoiser.config.target == "delta":
            x = context_BKCHW[:, -1] + x
        return x.clamp(-1, 1)

    def difficulty(self, denoised_BCHW: torch.Tensor, context_BKCHW: torch.Tensor) -> torch.Tensor:
        """How hard each frame is [B], from the first denoiser call alone: the mean absolute change it predicts
        from the last context frame. Frames that barely change (a still screen, a paused menu) come out right
        in one step; frames with motion are where more steps sharpen the sample."""
        change = denoised_BCHW if self.denoiser.config.target == "delta" else denoised_BCHW - context_BKCHW[:, -1]
        return change.float().abs().flatten(1).mean(1)

    @torch.no_grad()
    def sample_adaptive(
        self,
        context_BKCHW: torch.Tensor,
        actions_BK: torch.Tensor,
        num_steps: int,
        hard_fraction: float,
        noise_BCHW: torch.Tensor | None = None,
        select: str = "difficulty",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Like `sample`, but only the ceil(hard_fraction · B) hardest frames (by `difficulty` after the first
        denoiser call) get the whole `num_steps` schedule; the rest keep the one-step sample. Every schedule
        starts at σ_max, so the first call is shared and the cost is 1 + (num_steps - 1) · hard_fraction
        denoiser calls per frame. Shapes are fixed by B and hard_fraction (top-k, no data-dependent sizes), so it
        can be captured in a CUDA graph. hard_fraction = 1 is exactly `sample`; 0 is one Euler step.
        select="random" picks the frames at random (same compute): the control that shows what the signal buys."""
        if not 0.0 <= hard_fraction <= 1.0:
            raise ValueError(f"hard_fraction must be in [0, 1], got {hard_fraction}")
        if select not in ("difficulty", "random"):
            raise ValueError(f"select must be 'difficulty' or 'random', got '{select}'")
        if self.config.order != 1:
            raise ValueError("the adaptive sampler runs Euler steps (sampler order 1)")
        sigmas, x, ones = self._start(context_BKCHW, num_steps, noise_BCHW)
        denoised = self.denoiser.denoise(x, sigmas[0] * ones, context_BKCHW, actions_BK)
        out = denoised  # the one-step sample (Euler from σ_max straight to 0)
        B = x.shape[0]
        k = hard_count(B, hard_fraction)
        if k > 0 and num_steps > 1:
            if select == "random":
                hard = torch.randperm(B, device=x.device, generator=generator)[:k]
            else:
                hard = self.difficulty(denoised, context_BKCHW).topk(k).indices
            ctx, acts = context_BKCHW.index_select(0, hard), actions_BK.index_select(0, hard)
            xh = torch.lerp(x.index_select(0, hard), denoised.index_select(0, hard), 1 - sigmas[1] / sigmas[0])
            ones_h = ones[:k]
            for i in range(1, len(sigmas) - 1):
                s, s_next = sigmas[i], sigmas[i + 1]
                xh = torch.lerp(xh, self.denoiser.denoise(xh, s * ones_h, ctx, acts), 1 - s_next / s)
            out = out.index_copy(0, hard, xh)
        if self.denoiser.config.target == "delta":
            out = context_BKCHW[:, -1] + out
        return out.clamp(-1, 1)
