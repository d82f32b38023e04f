"""Vector-quantisation bottleneck with an EMA codebook and dead-code restarts (guards against collapse)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class VQConfig:
    """Codebook of `num_codes` vectors of size `code_dim`."""

    num_codes: int = 8
    """Number of discrete latent actions (Genie uses 8)."""
    code_dim: int = 16
    """Size of each code vector."""
    commitment: float = 0.25
    """Weight of the commitment loss pulling encoder outputs to their code."""
    decay: float = 0.95
    """EMA decay of codebook statistics."""
    dead_threshold: float = 0.03
    """A code whose EMA usage share falls below threshold/num_codes is restarted from a batch latent."""


class VectorQuantizer(nn.Module):
    """Nearest-code quantiser; the codebook follows EMA cluster means instead of gradients (VQ-VAE-2)."""

    def __init__(self, config: VQConfig) -> None:
        super().__init__()
        self.config = config
        k, d = config.num_codes, config.code_dim
        self.register_buffer("codebook", torch.randn(k, d) * 0.1)
        self.register_buffer("ema_count", torch.full((k,), 1.0 / k))
        self.register_buffer("ema_sum", self.codebook.clone() / k)
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self._seen_initialised = False

    def _initialised_seen(self) -> bool:
        """Whether the codebook was seeded from data; read from the device once, then remembered (a loaded
        state resets the memory)."""
        if not self._seen_initialised:
            self._seen_initialised = bool(self.initialised)
        return self._seen_initialised

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._seen_initialised = False
        super()._load_from_state_dict(*args, **kwargs)

    def nearest(self, z_BD: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row."""
        dist = torch.cdist(z_BD.float(), self.codebook.float())
        return dist.argmin(dim=-1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors for integer codes (any shape) -> shape + (code_dim,)."""
        return self.codebook[codes]

    @torch.no_grad()
    def _ema_update(self, z_BD: torch.Tensor, codes_B: torch.Tensor) -> None:
        cfg = self.config
        if not self._initialised_seen():
            # Seed the codebook from data so no code starts far from every latent.
            pick = torch.randint(0, z_BD.shape[0], (cfg.num_codes,), device=z_BD.device)
            self.codebook.copy_(z_BD[pick] + 0.01 * torch.randn_like(z_BD[pick]))
            self.ema_sum.copy_(self.codebook / cfg.num_codes)
            self.ema_count.fill_(1.0 / cfg.num_codes)
            self.initialised.fill_(True)
            self._seen_initialised = True
            codes_B = self.nearest(z_BD)
        onehot = F.one_hot(codes_B, cfg.num_codes).to(z_BD.dtype)
        share = onehot.mean(0)
        self.ema_count.mul_(cfg.decay).add_(share, alpha=1 - cfg.decay)
        self.ema_sum.mul_(cfg.decay).add_(onehot.t() @ z_BD / z_BD.shape[0], alpha=1 - cfg.decay)
        self.codebook.copy_(self.ema_sum / self.ema_count.clamp_min(1e-6).unsqueeze(1))
        dead = self.ema_count < cfg.dead_threshold / cfg.num_codes
        # Restart dead codes at the latents worst served by the current codebook: the i-th dead code takes the
        # i-th worst (cycling when more codes than latents are dead). Branchless, so a step never syncs.
        err = torch.cdist(z_BD, self.codebook).min(dim=1).values
        order = err.argsort(descending=True)
        rank = (dead.long().cumsum(0) - 1).clamp_min(0) % z_BD.shape[0]
        chosen = z_BD[order[rank]]
        self.codebook.copy_(torch.where(dead[:, None], chosen, self.codebook))
        self.ema_count.copy_(torch.where(dead, 1.0 / cfg.num_codes, self.ema_count))
        self.ema_sum.copy_(torch.where(dead[:, None], chosen / cfg.num_codes, self.ema_sum))

    def forward(self, z_BD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantise: returns (straight-through quantised latents, codes, commitment loss)."""
        z = z_BD.float()
        codes = self.nearest(z)
        if self.training:
            self._ema_update(z.detach(), codes)
            codes = self.nearest(z)
        q = self.codebook[codes]
        commit = self.config.commitment * F.mse_loss(z, q.detach())
        q_st = z + (q - z).detach()
        return q_st, codes, commit


def codebook_usage_tensors(codes: torch.Tensor, num_codes: int) -> dict[str, torch.Tensor]:
    """Perplexity (exp of code entropy) and the number of codes used at least once, as 0-dim tensors computed
    without a host sync (CUDA's bincount and boolean indexing would read the device)."""
    flat = codes.flatten().long()
    ones = torch.ones(flat.shape, device=flat.device)
    counts = torch.zeros(num_codes, device=flat.device).scatter_add_(0, flat, ones)
    p = counts / counts.sum().clamp_min(1)
    return {"perplexity": torch.special.entr(p).sum().exp(), "codes_used": (counts > 0).sum().float()}


def codebook_usage(codes: torch.Tensor, num_codes: int) -> dict[str, float]:
    """Perplexity (exp of code entropy) and the number of codes used at least once."""
    usage = codebook_usage_tensors(codes, num_codes)
    return {"perplexity": float(usage["perplexity"]), "codes_used": int(usage["codes_used"])}
