"""Action adapter: latent codes <-> a game's real actions, fitted from a few labelled transitions.

Code -> action is the empirical distribution of real actions seen with each code (Laplace-smoothed), so a
policy or world model that speaks latent codes can drive the real game. Action -> code follows AdaWorld's
average-latent initialisation: each real action gets the mean continuous latent of its transitions, and
its code is the code nearest that mean (ties broken by co-occurrence counts), so real actions can drive a
latent-action model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metabonk.common.checkpoint import Checkpointed
from metabonk.envs.arena.spec import NUM_ACTIONS
from metabonk.latent.data import TransitionData
from metabonk.latent.lam import LatentActionModel

KIND = "adapter"


@dataclass
class AdapterConfig:
    """Sizes of both vocabularies."""

    num_codes: int = 8
    num_actions: int = NUM_ACTIONS
    code_dim: int = 16
    movement: tuple[int, ...] = ()
    """Movement class of each action; empty means each action is its own class."""
    smoothing: float = 0.1
    """Pseudo-count added to every (code, action) pair."""


class ActionAdapter(Checkpointed, nn.Module):
    """Count tables and per-action mean latents, stored as buffers so they save like any model."""

    KIND = KIND
    CONFIG = AdapterConfig

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        self.config = config
        k, a, d = config.num_codes, config.num_actions, config.code_dim
        self.register_buffer("counts", torch.zeros(k, a))
        num_moves = max(config.movement) + 1 if config.movement else a
        self.register_buffer("move_counts", torch.zeros(k, num_moves))
        self.register_buffer("action_latent", torch.zeros(a, d))
        self.register_buffer("action_code", torch.zeros(a, dtype=torch.int64))

    def code_to_action_probs(self, codes: torch.Tensor) -> torch.Tensor:
        """P(real action | code), float [..., num_actions]."""
        table = self.counts + self.config.smoothing
        return (table / table.sum(-1, keepdim=True))[codes.long()]

    def code_to_action(self, codes: torch.Tensor, sample: bool = False,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """The most likely real action for each code (or one sampled from P(action | code))."""
        probs = self.code_to_action_probs(codes)
        if not sample:
            return probs.argmax(-1)
        flat = probs.reshape(-1, probs.shape[-1])
        return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])

    def code_to_movement(self, codes: torch.Tensor) -> torch.Tensor:
        """The most likely (effective) movement class for each code."""
        if float(self.move_counts.sum()) > 0:
            return self.move_counts[codes.long()].argmax(-1)
        probs = self.code_to_action_probs(codes)
        classes = self.config.movement or tuple(range(self.config.num_actions))
        move = torch.tensor(classes, device=probs.device)
        grouped = torch.zeros(*probs.shape[:-1], int(move.max()) + 1, device=probs.device)
        grouped.scatter_add_(-1, move.expand_as(probs), probs)
        return grouped.argmax(-1)

    def action_to_code(self, actions: torch.Tensor) -> torch.Tensor:
        """The latent code that stands for each real action."""
        return self.action_code[actions.long()]

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """NLL of the true action under P(action | code), and accuracy; batch has 'code' and 'action'. The tables
        are fitted by counting (`fit_adapter`, their maximum-likelihood solution), not by the gradient loop;
        this scores them in the same (loss, tensor metrics) shape."""
        probs = self.code_to_action_probs(batch["code"])
        action = batch["action"].long()
        loss = F.nll_loss(probs.clamp_min(1e-8).log(), action)
        acc = (probs.argmax(-1) == action).float().mean()
        return loss, {"loss": loss.detach(), "accuracy": acc}
@torch.no_grad()
def infer_all(lam: LatentActionModel, data: TransitionData,
              chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes int64 [N] and continuous latents float [N,D] of every transition in `data`."""
    lam.eval()
    codes, latents = [], []
    for start in range(0, len(data), chunk):
        rows = np.arange(start, min(start + chunk, len(data)))
        frames = data.windows(rows, lam.config.context)
        z = lam.latents(frames)
        latents.append(z.cpu())
        codes.append(lam.vq.nearest(z).cpu())
    return torch.cat(codes), torch.cat(latents)


def fit_adapter(lam: LatentActionModel, data: TransitionData, smoothing: float = 0.1) -> ActionAdapter:
    """Fit both directions of the adapter from the labelled transitions in `data`."""
    codes, latents = infer_all(lam, data)
    rows = np.arange(len(data))
    return adapter_from_codes(codes, latents, data.actions_at(rows), data.movement_at(rows), lam, data,
                              smoothing)


def adapter_from_codes(codes: torch.Tensor, latents: torch.Tensor, actions: torch.Tensor,
                       movements: torch.Tensor, lam: LatentActionModel, data: TransitionData,
                       smoothing: float = 0.1) -> ActionAdapter:
    """Build the adapter from already-inferred codes/latents and their true actions."""
    k = lam.config.vq.num_codes
    a = max(data.num_actions, int(actions.max()) + 1)
    cfg = AdapterConfig(num_codes=k, num_actions=a, code_dim=lam.config.vq.code_dim,
                        movement=tuple(int(m) for m in data.movement_classes()[:a]) if data.num_actions == a
                        else (), smoothing=smoothing)
    adapter = ActionAdapter(cfg)
    adapter.counts.index_put_((codes, actions), torch.ones(len(codes)), accumulate=True)
    adapter.move_counts.index_put_((codes, movements), torch.ones(len(codes)), accumulate=True)
    per_action = torch.zeros(a).index_add_(0, actions, torch.ones(len(actions)))
    sums = torch.zeros(a, cfg.code_dim).index_add_(0, actions, latents.float())
    seen = per_action > 0
    adapter.action_latent[seen] = sums[seen] / per_action[seen, None]
    nearest = lam.vq.nearest(adapter.action_latent.to(lam.device)).cpu()
    # An action's mean latent can sit between codes; its most frequent code is the better guess then.
    most_common = adapter.counts.argmax(0)
    agree = adapter.counts[nearest, torch.arange(a)] >= 0.5 * adapter.counts[most_common, torch.arange(a)]
    adapter.action_code.copy_(torch.where(agree & seen, nearest, most_common))
    return adapter
