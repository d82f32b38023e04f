"""PPO learns: on a small cue task the trained policy's return clearly beats the untrained policy's."""

from __future__ import annotations

import numpy as np
import torch

from metabonk.policy.agent import Agent
from metabonk.policy.evaluate import AgentController
from metabonk.policy.ppo import PPOArgs, train_ppo
from tests.test_policy_helpers import (
    CueEnv,
    one_thread,  # noqa: F401  (autouse fixture)
)


def mean_return(agent: Agent, memory: bool, episodes: int = 64) -> float:
    env = CueEnv(num_envs=episodes, seed=123, memory=memory)
    ctrl = AgentController(agent, greedy=True)
    obs, info = env.reset(seed=123)
    ctrl.reset(env)
    total = np.zeros(episodes)
    for _ in range(env.length):
        obs, r, term, trunc, info = env.step(ctrl.act(obs, info))
        total += r
        ctrl.episode_done(term | trunc)
    return float(total.mean())


def test_ppo_improves_return_over_untrained(tmp_path) -> None:
    torch.manual_seed(0)
    args = PPOArgs(
        env="cue",
        out=str(tmp_path / "ppo"),
        total_steps=8 * 32 * 12,
        num_envs=8,
        num_steps=32,
        num_minibatches=2,
        update_epochs=4,
        lr=1e-3,
        ent_coef=0.003,
        device="cpu",
        quiet=True,
        policy={"move_actions": 4, "card_head": False},
    )
    env = CueEnv(num_envs=8, seed=0)
    out = train_ppo(args, envs=env)
    trained = Agent.load(out)
    untrained = Agent(trained.cfg)
    r_trained, r_untrained = mean_return(trained, False), mean_return(untrained, False)
    # 8 steps per episode; chance is 2.0. Learned: at least 5 of 8 right on average.
    assert r_trained >= 5.0 and r_trained >= r_untrained + 2.5, (r_trained, r_untrained)
    # The run is resumable: the checkpoint holds the optimizer and the step count.
    from metabonk.common.checkpoint import load_trainer_state, read_config

    assert read_config(out, "policy")["meta"]["algo"] == "ppo"
    assert load_trainer_state(out)["global_step"] == args.total_steps
    assert (tmp_path / "ppo.tb").is_dir()
