"""Specialists' reward profiles: weights over Arena's reward components, applied by a vector-env wrapper.

Arena reports every weighted component in `info` as `r_<name>` (metabonk.envs.arena.spec); a profile
re-weights them, so a Killer and a Scout learn from the same game with different goals.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv, VectorWrapper

from metabonk.common.errors import MetabonkError
from metabonk.envs.arena.spec import REWARD_COMPONENTS, reward_key

PROFILES: dict[str, dict[str, float]] = {
    "killer": {"kill": 1.0, "boss_kill": 1.0},
    "scout": {"xp": 1.0, "level_up": 1.0},
    # Damage avoided: a penalty per HP taken, plus survival so that dying early never pays.
    "tank": {"survive": 1.0, "damage": 3.0},
    "survivor": {"survive": 1.0},
    "default": {c: 1.0 for c in REWARD_COMPONENTS},
}
"""Profile name -> multiplier of each `r_<component>` (already weighted by ArenaConfig's w_*)."""


def profile_weights(name: str) -> dict[str, float]:
    if name not in PROFILES:
        raise MetabonkError(f"unknown reward profile '{name}' (choose {', '.join(PROFILES)})")
    return PROFILES[name]


def profile_reward(info: dict[str, Any], weights: dict[str, float], n: int) -> np.ndarray:
    """The profile's reward [N] from one step's info."""
    r = np.zeros(n, np.float32)
    for comp, w in weights.items():
        key = reward_key(comp)
        if key not in info:
            raise MetabonkError(f"env info has no '{key}': reward profiles need Arena's reward components")
        r += w * np.asarray(info[key], np.float32)
    return r


class ProfileReward(VectorWrapper):
    """Replaces the env's reward by a profile's weighted sum of its `r_<component>` infos."""

    def __init__(self, env: VectorEnv, weights: dict[str, float]) -> None:
        super().__init__(env)
        self.weights = dict(weights)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, _, term, trunc, info = self.env.step(actions)
        return obs, profile_reward(info, self.weights, self.num_envs), term, trunc, info
