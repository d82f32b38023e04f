"""Arena, MetaBonk's embedded survivors-like game: batched in PyTorch, rendered from a following camera.

`make_arena_env(num_envs, size, seed, device, **overrides)` is the entry point used by `make_env("arena")`.
"""

from __future__ import annotations

from typing import Any

from metabonk.envs.arena.config import REWARD_COMPONENTS, UPGRADES, ArenaConfig
from metabonk.envs.arena.game import ACTION_MEANINGS, MOVES, NUM_ACTIONS, ArenaGame, upgrade_index
from metabonk.envs.arena.policies import RandomPolicy, ScriptedExpert, priority_cards
from metabonk.envs.arena.state import state_dim, state_layout
from metabonk.envs.arena.vector_env import ArenaSingleEnv, ArenaVectorEnv

__all__ = [
    "ACTION_MEANINGS",
    "MOVES",
    "NUM_ACTIONS",
    "REWARD_COMPONENTS",
    "UPGRADES",
    "ArenaConfig",
    "ArenaGame",
    "ArenaSingleEnv",
    "ArenaVectorEnv",
    "RandomPolicy",
    "ScriptedExpert",
    "make_arena_env",
    "priority_cards",
    "state_dim",
    "state_layout",
    "upgrade_index",
]


def make_arena_env(
    num_envs: int = 1,
    size: int = 64,
    seed: int = 0,
    device: str = "cpu",
    pixels: bool = True,
    **config_overrides: Any,
) -> ArenaVectorEnv:
    """A batched Arena vector env with `size`x`size` frames; any ArenaConfig field can be overridden."""
    from metabonk.common.device import resolve_device

    cfg = ArenaConfig().replace(frame_size=size, **config_overrides)
    return ArenaVectorEnv(num_envs, cfg, str(resolve_device(device)), seed, pixels)
