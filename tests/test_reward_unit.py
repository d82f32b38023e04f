"""The reward unit the world model's reward head regresses in: the size of a reward when one is paid."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from metabonk.world.train import reward_unit


def test_sparse_rewards_keep_their_size() -> None:
    # Scroll-like: a gem pays 1 on 1 % of the steps; the std (~0.1) would blow targets up to ~10
    r = torch.zeros(1000)
    r[::100] = 1.0
    data = SimpleNamespace(reward=[r[:500], r[500:]])
    assert reward_unit(data) == pytest.approx(1.0)
    assert float(r.std()) < 0.2  # the std this replaced would have been a tenth of the reward


def test_dense_small_rewards_are_scaled_up() -> None:
    # Arena-like: 0.01 for every tick survived, 0.05 per kill on some
    r = torch.full((400,), 0.01)
    r[::10] += 0.05
    unit = reward_unit(SimpleNamespace(reward=[r]))
    assert 0.01 < unit < 0.06
    assert unit == pytest.approx(float(r.pow(2).mean().sqrt()))


def test_no_reward_paid_means_no_rescaling() -> None:
    assert reward_unit(SimpleNamespace(reward=[torch.zeros(50)])) == 1.0
    assert reward_unit(SimpleNamespace(reward=[])) == 1.0
