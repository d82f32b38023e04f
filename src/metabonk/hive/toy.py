"""A toy two-niche task for fast hive tests: a one-step cue bandit whose niches use disjoint inputs.

Each step shows a fresh cue c in 0..3 in the state vector; niche "left" writes it in columns 0..3 and pays
1 for action c, niche "right" writes it in columns 4..7 and pays 1 for action 3 - c. Episodes last
EPISODE_STEPS steps (a return of 0..8; 2 for uniform play), so a tiny policy learns a niche in a few
thousand steps on CPU, and specialists of the two niches move mostly
different weights: the case where averaging dilutes and task-vector merges keep both skills.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from metabonk.common.errors import MetabonkError

TOY_NICHES = ("left", "right")
CUES = 4
STATE_DIM = 2 * CUES
FRAME = 16
EPISODE_STEPS = 8
"""Steps per episode: PPO rollouts of this length then start each episode at t = 0 (the CfC fast path)."""


class CueBanditEnv(VectorEnv):
    """N one-step cue bandits of one niche; observations {"pixels": uint8 [N,16,16,3], "state": [N,8]}."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}  # noqa: RUF012

    def __init__(self, num_envs: int, niche: str, seed: int = 0) -> None:
        if niche not in TOY_NICHES:
            raise MetabonkError(f"unknown toy niche '{niche}' (choose {', '.join(TOY_NICHES)})")
        self.num_envs, self.niche = num_envs, niche
        self.single_action_space = gym.spaces.Discrete(CUES)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.single_observation_space = gym.spaces.Dict(
            {
                "pixels": gym.spaces.Box(0, 255, (FRAME, FRAME, 3), np.uint8),
                "state": gym.spaces.Box(0.0, 1.0, (STATE_DIM,), np.float32),
            }
        )
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.rng = np.random.default_rng(seed)
        self.cue = np.zeros(num_envs, np.int64)
        self.t = np.zeros(num_envs, np.int64)
        self.ret = np.zeros(num_envs, np.float32)

    def _obs(self) -> dict[str, np.ndarray]:
        state = np.zeros((self.num_envs, STATE_DIM), np.float32)
        offset = 0 if self.niche == "left" else CUES
        state[np.arange(self.num_envs), offset + self.cue] = 1.0
        return {"pixels": np.zeros((self.num_envs, FRAME, FRAME, 3), np.uint8), "state": state}

    def target(self) -> np.ndarray:
        return self.cue if self.niche == "left" else CUES - 1 - self.cue

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.cue = self.rng.integers(0, CUES, self.num_envs)
        self.t[:] = 0
        self.ret[:] = 0
        return self._obs(), {}

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        a = np.asarray(actions, np.int64).reshape(-1)
        reward = (a == self.target()).astype(np.float32)
        self.t += 1
        self.ret += reward
        term = self.t >= EPISODE_STEPS
        trunc = np.zeros(self.num_envs, bool)
        info = {"episode_return": self.ret.copy(), "episode_length": self.t.copy()}
        self.t[term] = 0  # same-step autoreset: the next cue starts a new episode
        self.ret[term] = 0
        self.cue = self.rng.integers(0, CUES, self.num_envs)
        return self._obs(), reward, term, trunc, info

    def close_extras(self, **kwargs: Any) -> None:
        return None
