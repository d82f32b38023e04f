"""A vector env that loops over single-game adapters, with SAME_STEP autoreset and episode statistics.

Used for ALE and Crafter (small `num_envs`, one Python loop per step). Each adapter turns one game into
`reset(seed) -> (pixels, state)` and `step(a) -> (pixels, state, reward, terminated, truncated)`; this class
batches them into the observation dict and info contract of docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from metabonk.common.errors import MetabonkError


class GameAdapter(Protocol):
    """One game instance behind the loop vector env."""

    num_actions: int
    state_dim: int
    size: int

    def reset(self, seed: int | None) -> tuple[np.ndarray, np.ndarray]: ...

    def step(self, action: int) -> tuple[np.ndarray, np.ndarray, float, bool, bool]: ...

    def close(self) -> None: ...


class LoopVectorEnv(VectorEnv):
    """Steps each adapter in turn; when game i ends it is reset in the same step (SAME_STEP autoreset)."""

    def __init__(self, games: Sequence[GameAdapter], seed: int = 0, spec_name: str = "") -> None:
        if not games:
            raise MetabonkError("a vector env needs at least one game")
        self.games = list(games)
        self.num_envs = len(self.games)
        g = self.games[0]
        self.size = g.size
        self.spec_name = spec_name
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}
        self.render_mode = None
        self.single_action_space = gym.spaces.Discrete(g.num_actions)
        self.action_space = gym.spaces.MultiDiscrete(np.full(self.num_envs, g.num_actions, dtype=np.int64))
        self.single_observation_space = gym.spaces.Dict({
            "pixels": gym.spaces.Box(0, 255, (g.size, g.size, 3), np.uint8),
            "state": gym.spaces.Box(-np.inf, np.inf, (g.state_dim,), np.float32),
        })
        self.observation_space = gym.spaces.Dict({
            "pixels": gym.spaces.Box(0, 255, (self.num_envs, g.size, g.size, 3), np.uint8),
            "state": gym.spaces.Box(-np.inf, np.inf, (self.num_envs, g.state_dim), np.float32),
        })
        self._seed = seed
        self._pixels = np.zeros((self.num_envs, g.size, g.size, 3), np.uint8)
        self._state = np.zeros((self.num_envs, g.state_dim), np.float32)
        self._ret = np.zeros(self.num_envs, np.float64)
        self._len = np.zeros(self.num_envs, np.int64)
        self._needs_reset = True

    @property
    def num_actions(self) -> int:
        return int(self.single_action_space.n)

    def _obs(self) -> dict[str, np.ndarray]:
        return {"pixels": self._pixels.copy(), "state": self._state.copy()}

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if seed is None:
            seeds: list[int | None] = [self._seed + i for i in range(self.num_envs)] if self._needs_reset \
                else [None] * self.num_envs
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
        for i, g in enumerate(self.games):
            self._pixels[i], self._state[i] = g.reset(seeds[i])
        self._ret[:] = 0.0
        self._len[:] = 0
        self._needs_reset = False
        return self._obs(), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._needs_reset:
            raise MetabonkError("call reset() before step()")
        actions = np.asarray(actions).reshape(-1)
        if actions.shape[0] != self.num_envs:
            raise MetabonkError(f"expected {self.num_envs} actions, got {actions.shape[0]}")
        n = self.num_actions
        if actions.min() < 0 or actions.max() >= n:
            raise MetabonkError(f"actions must lie in [0, {n}), got {actions.tolist()}")
        reward = np.zeros(self.num_envs, np.float32)
        terminated = np.zeros(self.num_envs, bool)
        truncated = np.zeros(self.num_envs, bool)
        final_pixels = np.zeros_like(self._pixels)
        final_state = np.zeros_like(self._state)
        ep_ret = np.zeros(self.num_envs, np.float32)
        ep_len = np.zeros(self.num_envs, np.int64)
        for i, g in enumerate(self.games):
            px, st, r, te, tr = g.step(int(actions[i]))
            reward[i], terminated[i], truncated[i] = r, te, tr
            self._ret[i] += r
            self._len[i] += 1
            if te or tr:
                final_pixels[i], final_state[i] = px, st
                ep_ret[i], ep_len[i] = self._ret[i], self._len[i]
                self._ret[i], self._len[i] = 0.0, 0
                px, st = g.reset(None)
            self._pixels[i], self._state[i] = px, st
        info: dict[str, Any] = {
            "episode_return": ep_ret,
            "episode_length": ep_len,
            "final_obs": {"pixels": final_pixels, "state": final_state},
        }
        return self._obs(), reward, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        for g in self.games:
            g.close()
