"""Arena, MetaBonk's embedded survivors-like game: batched in PyTorch, rendered from a following camera.

`make_arena_env(num_envs, size, seed, device, **overrides)` is the entry point used by `make_env("arena")`;
the contract other code reads it by (actions, state fields, ticks per second, rewards) is `arena.spec`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metabonk.envs.arena.config import ArenaConfig
from metabonk.envs.arena.game import ArenaGame, upgrade_index
from metabonk.envs.arena.policies import RandomPolicy, ScriptedExpert, priority_cards
from metabonk.envs.arena.spec import (
    ACTION_MEANINGS,
    MOVES,
    NUM_ACTIONS,
    REWARD_COMPONENTS,
    TICKS_PER_SECOND,
    UPGRADES,
    StateView,
    state_dim,
    state_layout,
)

if TYPE_CHECKING:
    from metabonk.envs.arena.vector_env import ArenaSingleEnv, ArenaVectorEnv

__all__ = [
    "ACTION_MEANINGS",
    "MOVES",
    "NUM_ACTIONS",
    "REWARD_COMPONENTS",
    "TICKS_PER_SECOND",
    "UPGRADES",
    "ArenaConfig",
    "ArenaGame",
    "ArenaSingleEnv",
    "ArenaVectorEnv",
    "RandomPolicy",
    "ScriptedExpert",
    "StateView",
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
    from metabonk.envs.arena.vector_env import ArenaVectorEnv

    cfg = ArenaConfig().replace(frame_size=size, **config_overrides)
    return ArenaVectorEnv(num_envs, cfg, str(resolve_device(device)), seed, pixels)


def __getattr__(name: str) -> Any:
    """The Gymnasium faces load on first use, so the game and its spec import without gymnasium (GPU path)."""
    if name in ("ArenaSingleEnv", "ArenaVectorEnv"):
        from metabonk.envs.arena import vector_env

        return getattr(vector_env, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
