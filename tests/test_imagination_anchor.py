"""The anchor of a fine-tune in the dream: KL(π ‖ π_start) is zero where the policy is still its start, and with
a large weight the policy stays near its start where, without it, it moves to what the dream pays for."""

from __future__ import annotations

import copy

import numpy as np
import torch

from metabonk.policy.agent import Agent
from metabonk.policy.config import PolicyConfig
from metabonk.train.imagination import ImaginationActorCritic, ImaginationConfig
from metabonk.world.dream_env import DreamEnv
from tests.test_dream_check import SIZE, context, paying_world
from tests.test_policy_helpers import one_thread  # noqa: F401  (autouse fixture)

PAID = 5


def _fine_tune(anchor: float, updates: int = 40) -> tuple[float, float, float]:
    """(probability of the paid action after `updates`, before, KL to the start at the end)."""
    torch.manual_seed(0)
    agent = Agent(PolicyConfig(image_size=SIZE, channels=(8,), feature_dim=16, hidden=8, intent_dim=8,
                               head_hidden=8))
    start = copy.deepcopy(agent)
    world = paying_world(pays=PAID)
    cfg = ImaginationConfig(horizon=4, anchor_coef=anchor, ent_coef=0.0)
    ac = ImaginationActorCritic(agent, 18, cfg, DreamEnv(world, seed=1), start=start)
    opt = torch.optim.Adam(agent.parameters(), lr=3e-2)
    frames = torch.as_tensor(np.stack([context(s)[0] for s in range(8)]))
    batch = {"frames": frames, "actions": torch.zeros(8, 2, dtype=torch.long)}

    def paid_prob() -> float:
        with torch.no_grad():
            logits, _, _, _ = agent.step({"pixels": frames[:, -1]}, agent.initial_state(8))
        return float(torch.softmax(logits, -1)[:, PAID].mean())

    before = paid_prob()
    _, first = ac(batch)
    if anchor > 0:
        assert float(first["imagination/kl_to_start"]) < 1e-6  # the policy is still its start
    for _ in range(updates):
        loss, _ = ac(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _, last = ac(batch)
    return paid_prob(), before, float(last.get("imagination/kl_to_start", torch.tensor(float("nan"))))


def test_anchor_keeps_the_fine_tune_near_its_start() -> None:
    free, before, _ = _fine_tune(anchor=0.0)
    held, before_too, kl_held = _fine_tune(anchor=50.0)
    assert before == before_too < 0.1
    assert free > 0.5, f"without the anchor the policy should learn the paid action ({before:.3f} -> {free:.3f})"
    assert held < before + 0.1, f"with a large anchor it should stay near its start ({before:.3f} -> {held:.3f})"
    assert kl_held < 0.05


def test_no_start_no_anchor_term() -> None:
    agent = Agent(PolicyConfig(image_size=SIZE, channels=(8,), feature_dim=16, hidden=8, intent_dim=8,
                               head_hidden=8))
    ac = ImaginationActorCritic(agent, 18, ImaginationConfig(horizon=2, anchor_coef=1.0),
                                DreamEnv(paying_world(pays=PAID), seed=1))
    frames = torch.as_tensor(np.stack([context(s)[0] for s in range(2)]))
    _, metrics = ac({"frames": frames, "actions": torch.zeros(2, 2, dtype=torch.long)})
    assert "imagination/kl_to_start" not in metrics
    assert "start" not in dict(ac.named_children())  # π_start is neither trained nor saved with the module


def test_anchor_to_a_sharp_start_is_finite_and_pulls() -> None:
    """A start whose probabilities underflow to 0 (a sharp clone) still gives a finite KL with a gradient; as two
    Categoricals' `kl_divergence` it was +inf with no gradient, so the anchor held nothing."""
    torch.manual_seed(0)
    agent = Agent(PolicyConfig(image_size=SIZE, channels=(8,), feature_dim=16, hidden=8, intent_dim=8,
                               head_hidden=8))
    with torch.no_grad():
        agent.actor[-1].bias.copy_(torch.linspace(0.0, 300.0, agent.cfg.move_actions))  # moves 0.. never taken
    start = copy.deepcopy(agent)
    with torch.no_grad():
        agent.actor[-1].bias.copy_(torch.zeros(agent.cfg.move_actions))  # the fine-tune drifted to uniform
    cfg = ImaginationConfig(horizon=2, anchor_coef=1.0, ent_coef=0.0, value_coef=0.0)
    ac = ImaginationActorCritic(agent, 18, cfg, DreamEnv(paying_world(pays=PAID), seed=1), start=start)
    frames = torch.as_tensor(np.stack([context(s)[0] for s in range(4)]))
    loss, metrics = ac({"frames": frames, "actions": torch.zeros(4, 2, dtype=torch.long)})
    kl = float(metrics["imagination/kl_to_start"])
    assert np.isfinite(kl) and kl > 10.0, kl  # uniform vs all mass on the last move: ~log(#moves) + large gaps
    loss.backward()
    grad = agent.actor[-1].bias.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert float(grad[-1]) < 0  # descending the loss raises the start's move
