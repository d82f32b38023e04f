"""Penalty on the dependence between the codes of consecutive transitions (z_{t-1}, z_t) of a latent action model.

Under a random (or any memoryless) policy the true actions of consecutive steps are independent, while what an
object *did* is not: a Pong paddle with inertia keeps moving, so a code that names its displacement repeats
itself (in a random-policy Pong store, from the paddle height in RAM: consecutive displacement signs share
0.24 nats; the button as the last two displacements tell it, 0.02). Penalising I(z_{t-1}; z_t) pushes the
code from "where the object went" towards "what was pressed", the part of the change the past cannot predict.

The estimate: a running (EMA) joint distribution of consecutive hard codes gives each code pair its pointwise
mutual information PMI(i, j) = log P(i, j) / (P(i) P(j)); the penalty is the batch mean of PMI over its pairs,
whose expectation is I(z_{t-1}; z_t). Its gradient reaches the encoder through straight-through soft
assignments (softmax of minus the squared distances to the codes). A batch-only estimate would be biased by
about (K - 1)^2 / 2N nats (0.38 for 8 codes and 64 pairs), more than the signal, and that bias falls as fewer
codes are used: the running joint avoids rewarding collapse.
"""

from __future__ import annotations

import torch
from torch import nn


def soft_assign(z_BD: torch.Tensor, codebook_KD: torch.Tensor, temperature: float) -> torch.Tensor:
    """Code probabilities [B, K] whose value is the hard (nearest-code) one-hot and whose gradient is that of
    softmax(-d^2 / (temperature * mean d^2)): the scale follows the codebook, so shrinking every latent
    does not sharpen it."""
    d2 = torch.cdist(z_BD.float(), codebook_KD.float()).pow(2)
    soft = (-d2 / (temperature * d2.mean().detach().clamp_min(1e-8))).softmax(dim=1)
    hard = torch.nn.functional.one_hot(d2.argmin(dim=1), codebook_KD.shape[0]).to(soft.dtype)
    return hard + soft - soft.detach()


def pointwise_mutual_information(joint_KK: torch.Tensor) -> torch.Tensor:
    """log p(i, j) / (p(i) p(j)) of a joint distribution given as (unnormalised) counts or weights [K, K]; 0 where
    the joint is 0."""
    p = joint_KK / joint_KK.sum().clamp_min(1e-12)
    outer = p.sum(1, keepdim=True) * p.sum(0, keepdim=True)
    return torch.where(p > 0, (p / outer.clamp_min(1e-30)).log(), torch.zeros_like(p))


def joint_mutual_information(joint_KK: torch.Tensor) -> torch.Tensor:
    """I in nats (0-dim tensor) of a joint distribution given as (unnormalised) counts or weights [K, K]."""
    p = joint_KK / joint_KK.sum().clamp_min(1e-12)
    return (p * pointwise_mutual_information(joint_KK)).sum()


class ConsecutiveCodeMI(nn.Module):
    """Running joint of (z_{t-1}, z_t) and the PMI penalty of a batch of consecutive assignment pairs."""

    def __init__(self, num_codes: int, decay: float = 0.99) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("joint", torch.full((num_codes, num_codes), 1.0 / num_codes ** 2))

    def mutual_information(self) -> float:
        """I(z_{t-1}; z_t) in nats under the running joint."""
        return float(joint_mutual_information(self.joint))

    def forward(self, prev_BK: torch.Tensor, cur_BK: torch.Tensor) -> torch.Tensor:
        """Penalty (a scalar with gradients through both assignments); updates the running joint in training."""
        batch_joint = prev_BK.t() @ cur_BK / prev_BK.shape[0]  # [K, K]
        if self.training:
            with torch.no_grad():
                self.joint.mul_(self.decay).add_(batch_joint.detach(), alpha=1 - self.decay)
        return (batch_joint * pointwise_mutual_information(self.joint.detach())).sum()


def empirical_mutual_information(a: torch.Tensor, b: torch.Tensor, num_codes: int) -> float:
    """I(a; b) in nats of two integer code sequences of equal length (plug-in estimate)."""
    joint = torch.zeros(num_codes, num_codes, dtype=torch.float64)
    joint.index_put_((a.long(), b.long()), torch.ones(len(a), dtype=torch.float64), accumulate=True)
    return float(joint_mutual_information(joint))
