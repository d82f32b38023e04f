"""The policy's configuration dataclass: sizes of the encoder, the recurrent core and the heads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from metabonk.common.errors import MetabonkError
from metabonk.common.intents import INTENTS
from metabonk.envs.arena.spec import MOVE_ACTIONS, NUM_CARDS

ARENA_MOVE_ACTIONS = MOVE_ACTIONS
"""Arena's movement actions (9 directions × dash); the actions after them pick a level-up card."""
ARENA_CARDS = NUM_CARDS
PIXEL_NORMS = ("unit", "background")


@dataclass
class PolicyConfig:
    """Sizes and options of the System 1 actor-critic."""

    move_actions: int = ARENA_MOVE_ACTIONS
    """Width of the movement head: 18 on Arena, the env's action count elsewhere (ALE)."""
    card_head: bool = True
    """A separate head choosing one of `num_cards` level-up cards (Arena only)."""
    num_cards: int = ARENA_CARDS
    num_upgrades: int = 32
    """Upgrade ids the card head can embed (ids at or above this are clamped)."""
    image_size: int = 64
    pixel_norm: str = "unit"
    """How the encoder scales uint8 pixels: 'unit' (x/255 - 0.5) or 'background' (each frame's per-channel
    median, the flat background of Atari screens, subtracted and the rest amplified; see policy/encoder.py)."""
    channels: tuple[int, ...] = (16, 32, 32)
    """Conv channels of the pixel encoder (strides 4, 2, 1 for the first three layers, 2 after)."""
    feature_dim: int = 128
    state_dim: int = 0
    """Size of the optional `state` vector input; 0 means pixels only."""
    core: str = "cfc"
    """'cfc' (ncps liquid network) or 'mamba' (mamba_ssm on CUDA when installed, else mambapy)."""
    hidden: int = 64
    """CfC units, or Mamba d_model."""
    mamba_layers: int = 2
    mamba_d_state: int = 16
    num_intents: int = len(INTENTS)
    intent_dim: int = 16
    head_hidden: int = 64
    actor_init_gain: float = 0.01
    """Orthogonal gain of the actor's output layer: 0.01 starts PPO near uniform; with it BC on Pong (press toward
    the ball: where it is against the paddle) stayed at the majority label for thousands of steps (docs/demo.md)."""

    def __post_init__(self) -> None:
        if self.core not in ("cfc", "mamba"):
            raise MetabonkError(f"unknown policy core '{self.core}' (choose cfc or mamba)")
        if self.pixel_norm not in PIXEL_NORMS:
            raise MetabonkError(f"unknown pixel_norm '{self.pixel_norm}' (choose {', '.join(PIXEL_NORMS)})")
        if self.move_actions < 2:
            raise MetabonkError(f"move_actions must be ≥ 2, got {self.move_actions}")
        self.channels = tuple(int(c) for c in self.channels)

    @property
    def env_actions(self) -> int:
        """Size of the env's flat action space this policy drives."""
        return self.move_actions + (self.num_cards if self.card_head else 0)


def config_for_env(num_actions: int, is_arena: bool, **overrides: Any) -> PolicyConfig:
    """A PolicyConfig matching an env: Arena (18 moves + 3 cards) or a plain Discrete(n) env."""
    base: dict[str, Any] = (
        {"move_actions": ARENA_MOVE_ACTIONS, "card_head": True} if is_arena
        else {"move_actions": num_actions, "card_head": False}
    )
    return PolicyConfig(**{**base, **overrides})
