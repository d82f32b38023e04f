"""Stand-in environments and fixtures shared by the policy and demo tests (this module holds no tests)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

COLOURS = np.array([[220, 40, 40], [40, 40, 220], [40, 200, 40], [200, 200, 40]], np.uint8)


class CueEnv:
    """N games of `length` steps: the frame shows a colour cue; the action equal to the cue earns reward 1.

    With `memory=True` the cue shows only on the first frame (grey after), so only a recurrent policy can win.
    """

    def __init__(
        self,
        num_envs: int = 8,
        num_actions: int = 4,
        length: int = 8,
        size: int = 64,
        seed: int = 0,
        memory: bool = False,
    ) -> None:
        self.num_envs, self.length, self.size, self.memory = num_envs, length, size, memory
        self.single_action_space = gym.spaces.Discrete(num_actions)
        self.rng = np.random.default_rng(seed)
        self.cue = np.zeros(num_envs, np.int64)
        self.t = np.zeros(num_envs, np.int64)
        self.ret = np.zeros(num_envs)

    def _obs(self) -> dict[str, np.ndarray]:
        px = np.full((self.num_envs, self.size, self.size, 3), 128, np.uint8)
        show = (self.t == 0) | (not self.memory)
        px[show] = COLOURS[self.cue[show]][:, None, None, :]
        return {"pixels": px, "state": np.zeros((self.num_envs, 1), np.float32)}

    def reset(self, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.cue = self.rng.integers(0, self.single_action_space.n, self.num_envs)
        self.t[:] = 0
        self.ret[:] = 0
        return self._obs(), {}

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        reward = (np.asarray(actions) == self.cue).astype(np.float32)
        if self.memory:
            reward[self.t == 0] = 0.0  # the cue frame itself is free: only recalling it later pays
        self.ret += reward
        self.t += 1
        trunc = self.t >= self.length
        info: dict[str, Any] = {}
        if trunc.any():
            info = {
                "final_obs": self._obs(),
                "episode_return": self.ret.copy(),
                "episode_length": self.t.copy(),
            }
            n = int(trunc.sum())
            self.cue[trunc] = self.rng.integers(0, self.single_action_space.n, n)
            self.t[trunc] = 0
            self.ret[trunc] = 0
        return self._obs(), reward, np.zeros(self.num_envs, bool), trunc, info

    def close(self) -> None:
        return None


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """Run each policy test on one torch thread (on a shared, loaded CPU, OpenMP spin-waits cost ~10×)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
