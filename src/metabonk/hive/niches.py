"""Niches: where a specialist trains and where every candidate is scored (an Arena configuration and a
reward profile, a toy niche for tests; dreamed niches plug in once the online dream loop exists).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv

from metabonk.common.errors import MetabonkError
from metabonk.envs.arena import ArenaConfig, make_arena_env
from metabonk.envs.arena.spec import StateView
from metabonk.hive.profiles import ProfileReward, profile_weights
from metabonk.hive.toy import TOY_NICHES, CueBanditEnv

CPU_ARENA: dict[str, Any] = {"stage_steps": 400}
"""Arena overrides every default niche shares: a short stage, so CPU rounds finish in minutes."""

ARENA_NICHES: dict[str, dict[str, Any]] = {
    "killer": {"spawn_rate_start": 0.15, "spawn_rate_end": 0.5, "enemy_hp": 1.0},
    "scout": {"elite_chance": 0.25, "xp_base": 2.0},
    "tank": {"enemy_speed": 0.17},
    "survivor": {"boss_times": (0.3, 0.6), "spawn_rate_end": 0.6},
}
"""Specialist name -> its niche's Arena perturbation (on top of CPU_ARENA); its reward profile has the same name."""


@dataclass
class Niche:
    """A training or validation world: kind 'arena' (ArenaConfig overrides + profile) or 'toy'."""

    name: str
    kind: str = "arena"
    profile: str = "default"
    overrides: dict[str, Any] = field(default_factory=dict)
    size: int = 16
    """Frame size of the Arena pixels (16 keeps a CPU policy tiny)."""

    def __post_init__(self) -> None:
        if self.kind == "dream":
            raise MetabonkError(
                "dream niches need the online dream loop (issue 17, metabonk.train); use arena or toy niches"
            )
        if self.kind not in ("arena", "toy"):
            raise MetabonkError(f"unknown niche kind '{self.kind}' (arena or toy)")
        if self.kind == "toy" and self.name not in TOY_NICHES:
            raise MetabonkError(f"unknown toy niche '{self.name}' (choose {', '.join(TOY_NICHES)})")
        if self.kind == "arena":
            profile_weights(self.profile)
            self.arena_config()  # unknown or invalid options fail here, not inside a Ray actor

    def arena_config(self) -> ArenaConfig:
        return ArenaConfig().replace(frame_size=self.size, **self.overrides)

    def make_env(self, num_envs: int, seed: int) -> VectorEnv:
        if self.kind == "toy":
            return CueBanditEnv(num_envs, self.name, seed)
        env = make_arena_env(num_envs, size=self.size, seed=seed, **self.overrides)
        return ProfileReward(env, profile_weights(self.profile))

    @property
    def env_name(self) -> str:
        """What PPO's `env` field says (Arena gets the card head)."""
        return "arena" if self.kind == "arena" else f"toy:{self.name}"

    def perturbed(self, name: str, changes: dict[str, Any]) -> Niche:
        return Niche(name, self.kind, self.profile, {**self.overrides, **changes}, self.size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Niche:
        o = dict(d.get("overrides", {}))
        if "boss_times" in o:
            o["boss_times"] = tuple(o["boss_times"])
        return cls(d["name"], d.get("kind", "arena"), d.get("profile", "default"), o, int(d.get("size", 16)))


def default_niche(specialist: str, size: int = 16) -> Niche:
    """The niche a named specialist trains in: Arena's perturbation for it, or a toy niche."""
    if specialist in TOY_NICHES:
        return Niche(specialist, "toy")
    if specialist not in ARENA_NICHES:
        raise MetabonkError(
            f"unknown specialist '{specialist}' (choose {', '.join([*ARENA_NICHES, *TOY_NICHES])})"
        )
    return Niche(specialist, "arena", specialist, {**CPU_ARENA, **ARENA_NICHES[specialist]}, size)


def death_causes(niche: Niche, final_state: np.ndarray, terminated: np.ndarray) -> list[str]:
    """Why each first episode ended: 'survived' (stage end), 'boss' (died with a boss alive), 'swarm'
    (died to the wave); toy niches only 'ended'."""
    if niche.kind != "arena":
        return ["ended"] * len(terminated)
    view = StateView(final_state, niche.arena_config())
    boss = np.asarray(view.boss_alive)
    return ["survived" if not t else ("boss" if b else "swarm") for t, b in zip(terminated, boss, strict=True)]
