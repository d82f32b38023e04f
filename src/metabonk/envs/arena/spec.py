"""The Arena contract: action layout, state-vector fields, ticks per second, upgrades and reward components.

Everything outside the game (policies, planner, controller, world model, bridge) reads Arena through this
module: flat action ids are built and taken apart with the names below, and state vectors are read with
`StateView`, a typed view with named fields in the game's units, never with column offsets.

Actions (21): `direction + DASH * dash` for direction 0..8 (0 stands, 1..8 = E, NE, N, NW, W, SW, S, SE in
world axes, x east and y north), then `CARD_BASE + k` picks level-up card k in 0..2.

State vector (float32 [..., state_dim(cfg)]), blocks in this order:
  player (PLAYER_FIELDS): x/A, y/A, vx/speed, vy/speed, hp/max_hp, max_hp/100, dash_cooldown fraction,
               dashing, level/20, xp/xp_next, gold/100, time/stage, menu_open, menu_timer/menu_timeout
  upgrades (U): pick counts / 5, in UPGRADES order
  cards (3*U): one-hot upgrade id of each of the 3 offered cards (zeros when the menu is closed)
  enemies (K*ENEMY_FIELDS): the K nearest alive enemies: dx/view, dy/view, dist/view, hp fraction, elite, boss,
               valid
  gems (M*GEM_FIELDS): the M nearest gems: dx/view, dy/view, valid
  wave (WAVE_FIELDS): alive enemies / slots, boss alive, time to next boss / stage (1 when none left)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import numpy as np

from metabonk.common.errors import MetabonkError

if TYPE_CHECKING:
    import torch

TICKS_PER_SECOND = 60
"""Game ticks per second of play (MegaBonk's clock; the bridge and the planner convert with it)."""

UPGRADES: tuple[str, ...] = (
    "damage",
    "cooldown",
    "projectile_count",
    "area",
    "move_speed",
    "max_hp",
    "regen",
    "armor",
    "magnet",
    "xp_gain",
    "luck",
)
"""Upgrade id i is UPGRADES[i]; `card_options` in info holds these ids."""
NUM_UPGRADES = len(UPGRADES)

REWARD_COMPONENTS: tuple[str, ...] = ("survive", "kill", "xp", "level_up", "boss_kill", "damage")
"""Reward components, each exposed in info as `reward_key(name)` (already multiplied by its weight)."""


def reward_key(component: str) -> str:
    """The info key of one weighted reward component, e.g. 'r_kill'."""
    return f"r_{component}"


# ---------------------------------------------------------------------------------------------- actions
_DIAG = math.sqrt(0.5)
MOVES: tuple[tuple[float, float], ...] = (
    (0.0, 0.0),
    (1.0, 0.0),
    (_DIAG, _DIAG),
    (0.0, 1.0),
    (-_DIAG, _DIAG),
    (-1.0, 0.0),
    (-_DIAG, -_DIAG),
    (0.0, -1.0),
    (_DIAG, -_DIAG),
)
"""Unit move vector of each direction id in world axes (x east, y north); direction 0 stands still."""
DIRECTION_NAMES: tuple[str, ...] = ("NOOP", "E", "NE", "N", "NW", "W", "SW", "S", "SE")
NUM_DIRECTIONS = len(MOVES)
DASH = NUM_DIRECTIONS
"""Added to a direction id for the same move with a dash."""
MOVE_ACTIONS = 2 * NUM_DIRECTIONS
"""Actions below this move (and maybe dash); the rest pick cards."""
NUM_CARDS = 3
CARD_BASE = MOVE_ACTIONS
"""Action CARD_BASE + k picks level-up card k."""
NUM_ACTIONS = MOVE_ACTIONS + NUM_CARDS
ACTION_MEANINGS: tuple[str, ...] = tuple(
    [f"{m}{'+DASH' if d else ''}" for d in (0, 1) for m in DIRECTION_NAMES]
    + [f"CARD{k + 1}" for k in range(NUM_CARDS)]
)


STEPS: tuple[tuple[int, int], ...] = tuple((int(np.sign(x)), int(np.sign(y))) for x, y in MOVES)
"""Grid step (dx, dy) in {-1, 0, 1}² of each direction id, world axes (y north)."""
_DIRECTION_OF_STEP = {step: d for d, step in enumerate(STEPS)}


def direction_toward(dx: int, dy: int) -> int:
    """The direction id of a step (dx, dy) in {-1, 0, 1}² in world axes (y north); (0, 0) stands."""
    return _DIRECTION_OF_STEP[(dx, dy)]


def move_action(direction: int, dash: bool = False) -> int:
    """The flat action moving in `direction` (0..8), dashing if `dash`."""
    if not 0 <= direction < NUM_DIRECTIONS:
        raise ValueError(f"direction must be in 0..{NUM_DIRECTIONS - 1}, got {direction}")
    return direction + DASH * int(dash)


def card_action(k: int) -> int:
    """The flat action picking level-up card k (0..2)."""
    if not 0 <= k < NUM_CARDS:
        raise ValueError(f"card must be in 0..{NUM_CARDS - 1}, got {k}")
    return CARD_BASE + k


def is_card(action: int) -> bool:
    return CARD_BASE <= action < NUM_ACTIONS


def direction_of(action: int) -> int:
    """The move direction of a flat action (a card action stands: 0)."""
    return action % NUM_DIRECTIONS if action < MOVE_ACTIONS else 0


def dashes(action: int) -> bool:
    return DASH <= action < MOVE_ACTIONS


# ---------------------------------------------------------------------------------------------- state
PLAYER_FIELDS: tuple[str, ...] = (
    "x",
    "y",
    "vx",
    "vy",
    "hp_frac",
    "max_hp",
    "dash_cooldown",
    "dashing",
    "level",
    "xp_frac",
    "gold",
    "time_frac",
    "menu_open",
    "menu_timer",
)
ENEMY_FIELDS: tuple[str, ...] = ("dx", "dy", "dist", "hp_frac", "elite", "boss", "valid")
GEM_FIELDS: tuple[str, ...] = ("dx", "dy", "valid")
WAVE_FIELDS: tuple[str, ...] = ("alive_frac", "boss_alive", "next_boss")
PLAYER = {name: i for i, name in enumerate(PLAYER_FIELDS)}
ENEMY = {name: i for i, name in enumerate(ENEMY_FIELDS)}
GEM = {name: i for i, name in enumerate(GEM_FIELDS)}
WAVE = {name: i for i, name in enumerate(WAVE_FIELDS)}

LEVEL_SCALE = 20.0
MAX_HP_SCALE = 100.0
GOLD_SCALE = 100.0
UPGRADE_SCALE = 5.0
"""The state vector holds level / LEVEL_SCALE, max_hp / MAX_HP_SCALE, gold / GOLD_SCALE, picks / UPGRADE_SCALE."""


A = TypeVar("A", np.ndarray, "torch.Tensor")


def menu_open_of(state: A) -> A:
    """Whether the level-up menu is open, from state vectors [..., D] of any layout (the player block leads)."""
    return state[..., PLAYER["menu_open"]] > 0.5


class LayoutConfig(Protocol):
    """The config fields the layout and the view read (ArenaConfig has them all)."""

    state_enemies: int
    state_gems: int
    arena_size: float
    view_size: float
    stage_steps: int


def state_layout(cfg: LayoutConfig) -> dict[str, tuple[int, int]]:
    """Block name -> (start, end) column range of the state vector."""
    sizes = [
        ("player", len(PLAYER_FIELDS)),
        ("upgrades", NUM_UPGRADES),
        ("cards", NUM_CARDS * NUM_UPGRADES),
        ("enemies", cfg.state_enemies * len(ENEMY_FIELDS)),
        ("gems", cfg.state_gems * len(GEM_FIELDS)),
        ("wave", len(WAVE_FIELDS)),
    ]
    out, start = {}, 0
    for name, n in sizes:
        out[name] = (start, start + n)
        start += n
    return out


def state_dim(cfg: LayoutConfig) -> int:
    return max(end for _, end in state_layout(cfg).values())


class StateView(Generic[A]):
    """Named fields of Arena state vectors `x` [..., D] (numpy or torch), in the game's units.

    Fields keep the leading dimensions of `x`; per-enemy and per-gem fields add a slot dimension [..., K].
    """

    def __init__(self, x: A, cfg: LayoutConfig) -> None:
        self.x, self.cfg = x, cfg
        self.layout = state_layout(cfg)
        if x.shape[-1] != state_dim(cfg):
            raise MetabonkError(
                f"arena state vector has {x.shape[-1]} columns, this config's layout has {state_dim(cfg)}"
            )

    def _block(self, name: str) -> A:
        a, b = self.layout[name]
        return self.x[..., a:b]

    def player(self, field: str) -> A:
        """One raw (normalised) player column, e.g. player('time_frac')."""
        return self.x[..., self.layout["player"][0] + PLAYER[field]]

    # --- player, in game units
    @property
    def position(self) -> A:
        """[..., 2] world units (x east, y north)."""
        p0 = self.layout["player"][0] + PLAYER["x"]
        return self.x[..., p0 : p0 + 2] * self.cfg.arena_size

    @property
    def hp_frac(self) -> A:
        return self.player("hp_frac")

    @property
    def max_hp(self) -> A:
        return self.player("max_hp") * MAX_HP_SCALE

    @property
    def hp(self) -> A:
        return self.hp_frac * self.max_hp

    @property
    def level(self) -> A:
        """Level as a float (round it for the integer)."""
        return self.player("level") * LEVEL_SCALE

    @property
    def dash_ready(self) -> A:
        return self.player("dash_cooldown") <= 0

    @property
    def time_frac(self) -> A:
        return self.player("time_frac")

    @property
    def time_s(self) -> A:
        """Seconds of play so far (menu ticks do not count)."""
        return self.time_frac * (self.cfg.stage_steps / TICKS_PER_SECOND)

    @property
    def menu_open(self) -> A:
        return self.player("menu_open") > 0.5

    @property
    def upgrade_counts(self) -> A:
        """[..., U] picks of each upgrade, in UPGRADES order (floats; round for integers)."""
        return self._block("upgrades") * UPGRADE_SCALE

    @property
    def cards(self) -> A:
        """[..., 3] upgrade ids of the offered cards (meaningful only while the menu is open)."""
        return self._block("cards").reshape((*self.x.shape[:-1], NUM_CARDS, NUM_UPGRADES)).argmax(-1)

    # --- nearest enemies and gems
    @property
    def enemies(self) -> A:
        """[..., K, len(ENEMY_FIELDS)] raw enemy rows, nearest first."""
        return self._block("enemies").reshape((*self.x.shape[:-1], self.cfg.state_enemies, len(ENEMY_FIELDS)))

    def enemy(self, field: str) -> A:
        """[..., K] one raw enemy column, e.g. enemy('elite')."""
        return self.enemies[..., ENEMY[field]]

    @property
    def enemy_offset(self) -> A:
        """[..., K, 2] enemy position minus the player's, world units."""
        return self.enemies[..., ENEMY["dx"] : ENEMY["dy"] + 1] * self.cfg.view_size

    @property
    def enemy_distance(self) -> A:
        """[..., K] world units (0 in empty slots)."""
        return self.enemy("dist") * self.cfg.view_size

    @property
    def enemy_valid(self) -> A:
        return self.enemy("valid") > 0.5

    @property
    def gems(self) -> A:
        """[..., M, len(GEM_FIELDS)] raw gem rows, nearest first."""
        return self._block("gems").reshape((*self.x.shape[:-1], self.cfg.state_gems, len(GEM_FIELDS)))

    @property
    def gem_offset(self) -> A:
        """[..., M, 2] gem position minus the player's, world units."""
        return self.gems[..., GEM["dx"] : GEM["dy"] + 1] * self.cfg.view_size

    @property
    def gem_valid(self) -> A:
        return self.gems[..., GEM["valid"]] > 0.5

    # --- wave
    def wave(self, field: str) -> A:
        return self.x[..., self.layout["wave"][0] + WAVE[field]]

    @property
    def boss_alive(self) -> A:
        return self.wave("boss_alive") > 0.5
