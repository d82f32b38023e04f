"""A tiny BC policy trained on the intent expert's intent-labelled demos follows its intents measurably better
than the same policy trained with the intents shuffled across windows (CPU, small sizes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from metabonk.envs.arena.config import ArenaConfig
from metabonk.envs.arena.spec import state_dim
from metabonk.policy.intent_signatures import AgentIntentController, intent_lift, rollout_segments

SIZE = 48
TINY = {"channels": (8, 8, 8), "feature_dim": 32, "hidden": 32, "intent_dim": 8, "head_hidden": 32,
        "state_dim": state_dim(ArenaConfig())}
LIFT_MARGIN = 1.0
"""Summed lift (standard deviations over segments, see intent_lift; both policies play the same games and
intent plan, so the plan's confounds cancel in the difference) by which the intent-conditioned policy must
beat the shuffled control. Measured with this test's sizes, training seeds 0 / 1: summed lift -0.52 / 0.09
conditioned vs -2.38 / -1.81 shuffled, gaps 1.86 / 1.90; the margin is about half the smaller gap."""


def train_tiny(demos: Path, out: Path, intents: str, seed: int, steps: int = 300) -> Path:
    from metabonk.policy.bc import BCArgs, train_bc

    return train_bc(BCArgs(data=str(demos), out=str(out), steps=steps, batch_size=16, seq_len=8, lr=3e-3,
                           seed=seed, device="cpu", intents=intents, quiet=True, save_every=10_000,
                           policy=dict(TINY)))


def lifts_of(ckpt: Path, seed: int, games: int = 12) -> dict[str, float]:
    from metabonk.policy.agent import Agent

    agent = Agent.load(ckpt, "cpu")
    seg = rollout_segments(AgentIntentController(agent, "cpu", seed=seed), games, seed=seed, size=SIZE)
    return intent_lift(seg)


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from metabonk.data.record import record_episodes

    out = tmp_path_factory.mktemp("intents") / "demos"
    record_episodes("arena", out, 6, policy="intents", num_envs=6, size=SIZE, seed=0, show_progress=False)
    return out


@pytest.mark.slow
def test_bc_on_intent_demos_follows_intents_better_than_shuffled(demos: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    follow = lifts_of(train_tiny(demos, tmp_path / "bc", "auto", seed=0), seed=100)
    control = lifts_of(train_tiny(demos, tmp_path / "shuffled", "shuffled", seed=0), seed=100)
    gap = sum(follow.values()) - sum(control.values())
    assert gap > LIFT_MARGIN, (follow, control)
    assert max(follow.values()) > 0.3, follow  # some intent clearly followed (0.52 / 1.56 measured)
    assert np.isfinite(list(follow.values())).all()
