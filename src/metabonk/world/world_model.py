"""The world model: EDM denoiser + sampler for the next frame and the reward/termination model, saved as one
checkpoint of kind "world"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from metabonk.common.checkpoint import Checkpointed, config_from_dict, read_config
from metabonk.common.errors import MetabonkError
from metabonk.world.config import EDMConfig, SamplerConfig, UNetConfig, WorldConfig
from metabonk.world.denoiser import Denoiser, frames_to_float
from metabonk.world.reward_model import RewardModel
from metabonk.world.sampler import DiffusionSampler

KIND = "world"


def world_config_from_dict(data: dict[str, Any]) -> WorldConfig:
    """Rebuild a WorldConfig (with its nested configs) from checkpoint JSON."""
    nested = {"unet": UNetConfig, "edm": EDMConfig, "sampler": SamplerConfig}
    flat = {k: v for k, v in data.items() if k not in nested}
    flat.setdefault("target", "frame")  # checkpoints written before the delta target modelled whole frames
    cfg = config_from_dict(WorldConfig, flat)
    for name, cls in nested.items():
        if name in data:
            setattr(cfg, name, config_from_dict(cls, data[name]))
    return cfg


class WorldModel(Checkpointed, nn.Module):
    """p(x_{t+1} | x_{t-k+1..t}, a_{t-k+1..t}) by diffusion, plus r_t and terminated_t."""

    KIND = KIND
    CONFIG = WorldConfig

    @classmethod
    def config_from_dict(cls, data: dict[str, Any]) -> WorldConfig:
        return world_config_from_dict(data)

    def __init__(self, config: WorldConfig) -> None:
        super().__init__()
        self.config = config
        self.denoiser = Denoiser(config)
        self.reward_model = RewardModel(config)
        self.sampler = DiffusionSampler(self.denoiser, config.sampler)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """batch: obs uint8 [B,k+1,H,W,C] (or float [B,k+1,C,H,W] in [-1,1]), action long [B,k],
        reward/terminated [B,k]. Returns the summed loss and per-part metrics (0-dim tensors, no host sync)."""
        obs = batch["obs"]
        if obs.dtype == torch.uint8:
            obs = frames_to_float(obs)
        k = self.config.num_context
        if obs.shape[1] != k + 1:
            raise MetabonkError(f"world model batch needs {k + 1} frames per window, got {obs.shape[1]}")
        b = {**batch, "obs": obs}
        d_loss, metrics = self.denoiser(b)
        loss = d_loss
        if "reward" in batch and "terminated" in batch:
            r_loss, r_metrics = self.reward_model(b)
            loss = loss + self.config.reward_loss_weight * r_loss
            metrics.update(r_metrics)
        metrics["loss/total"] = loss.detach()
        return loss, metrics
def read_meta(path: str | Path) -> dict[str, Any]:
    """The free-form meta of a world checkpoint (data path, steps trained, action source...)."""
    return dict(read_config(path, kind=KIND).get("meta", {}))
