"""Crafter behind the MetaBonk env contract: size×size RGB pixels, inventory/9 as state, 17 flat actions."""

from __future__ import annotations

from typing import Any

import numpy as np

from metabonk.common.errors import MetabonkError
from metabonk.envs.autoreset import LoopVectorEnv

MAX_ITEM = 9.0  # Crafter caps every inventory count at 9


class CrafterGame:
    """One crafter.Env as a GameAdapter; death is `terminated`, the length limit is `truncated`."""

    def __init__(self, size: int, seed: int, length: int = 10000, area: int = 64) -> None:
        import crafter
        from crafter import constants

        self._crafter = crafter
        self._length = length
        self._area = (area, area)
        self.size = size
        self.env = crafter.Env(area=self._area, size=(size, size), length=length, seed=seed)
        self._seed: int | None = seed
        self._fresh = True  # no reset yet: reset(seed=self._seed) needs no new Env
        self.items = list(constants.items.keys())
        self.num_actions = len(constants.actions)
        self.action_meanings = list(constants.actions)
        self.state_dim = len(self.items)

    def _state(self, inventory: dict[str, int]) -> np.ndarray:
        return np.array([inventory.get(k, 0) for k in self.items], np.float32) / MAX_ITEM

    def reset(self, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
        if seed is not None and not (self._fresh and seed == self._seed):
            # crafter seeds at construction; reseeding means a new world generator
            self.env = self._crafter.Env(area=self._area, size=(self.size, self.size), length=self._length,
                                         seed=seed)
            self._seed = seed
        self._fresh = False
        frame = self.env.reset()
        return np.asarray(frame, np.uint8), self._state(self.env._player.inventory)

    def step(self, action: int) -> tuple[np.ndarray, np.ndarray, float, bool, bool]:
        frame, reward, done, info = self.env.step(action)
        dead = bool(done) and info["discount"] == 0
        return np.asarray(frame, np.uint8), self._state(info["inventory"]), float(reward), dead, \
            bool(done) and not dead

    def close(self) -> None:
        return None


def make_crafter_env(num_envs: int = 1, size: int = 64, seed: int = 0, **kw: Any) -> LoopVectorEnv:
    """`num_envs` Crafter worlds (kw: length/max_episode_steps before truncation, default 10000;
    area = world side, default 64, smaller worlds generate faster)."""
    allowed = {"length", "max_episode_steps", "area"}
    unknown = set(kw) - allowed
    if unknown:
        raise MetabonkError(f"unknown Crafter option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    length = int(kw.get("max_episode_steps", kw.get("length", 10000)))
    area = int(kw.get("area", 64))
    if area < 16:
        raise MetabonkError(f"Crafter area must be >= 16, got {area}")
    games = [CrafterGame(size, seed + i, length, area) for i in range(num_envs)]
    env = LoopVectorEnv(games, seed=seed, spec_name="crafter")
    env.action_meanings = games[0].action_meanings  # type: ignore[attr-defined]
    return env
