"""Reward and termination model: a conv net over the frame stack (past k frames + the new one)
and the action."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metabonk.world.blocks import groups_for
from metabonk.world.config import WorldConfig


class RewardModel(nn.Module):
    """Predicts r_t and terminated_t of the transition x_{t-k+1..t}, a_t → x_{t+1}."""

    def __init__(self, config: WorldConfig) -> None:
        super().__init__()
        self.config = config
        c_in = (config.num_context + 1) * config.img_channels
        layers: list[nn.Module] = []
        for ch in config.reward_channels:
            layers += [
                nn.Conv2d(c_in, ch, 4, stride=2, padding=1),
                nn.GroupNorm(groups_for(ch, 8), ch),
                nn.SiLU(),
            ]
            c_in = ch
        self.encoder = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.act_emb = nn.Embedding(config.num_actions, config.reward_hidden)
        self.head = nn.Sequential(
            nn.Linear(c_in * 16 + config.reward_hidden, config.reward_hidden),
            nn.SiLU(),
            nn.Linear(config.reward_hidden, 2),
        )

    def predict(
        self, frames_BKCHW: torch.Tensor, action_B: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """frames: the k context frames then the next frame, [B,k+1,C,H,W] in [-1,1] → (reward, end logit)."""
        reward_n, logit = self._heads(frames_BKCHW, action_B)
        return reward_n * self.config.reward_scale, logit

    def _heads(self, frames_BKCHW: torch.Tensor, action_B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reward / reward_scale, end logit): the heads' raw outputs."""
        h = torch.cat([self.encoder(frames_BKCHW.flatten(1, 2)), self.act_emb(action_B)], dim=1)
        out = self.head(h)
        return out[:, 0], out[:, 1]

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """batch: obs [B,k+1,C,H,W], action/reward/terminated [B,k]; the target is the last transition."""
        k = self.config.num_context
        reward_n, logit = self._heads(batch["obs"], batch["action"][:, k - 1])
        r_true = batch["reward"][:, k - 1].float()
        t_true = batch["terminated"][:, k - 1].float()
        r_loss = F.mse_loss(reward_n, r_true / self.config.reward_scale)
        # a fill on the device, not a copy from the host (a blocking copy would wait for the GPU every step)
        pos_weight = torch.full((), self.config.termination_pos_weight, device=logit.device)
        t_loss = F.binary_cross_entropy_with_logits(logit, t_true, pos_weight=pos_weight)
        loss = r_loss + t_loss
        return loss, {"loss/reward": r_loss.detach(), "loss/termination": t_loss.detach()}
