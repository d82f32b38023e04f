"""Baseline Arena policies: a scripted expert (kites, collects gems, picks sensible cards) and uniform random.

Both are batched callables `(obs, info) -> np.ndarray[N] int64` that read only the documented state
vector (and `info["card_options"]` when present), so they work on any source of Arena observations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from metabonk.envs.arena.config import ArenaConfig
from metabonk.envs.arena.spec import CARD_BASE, DASH, MOVES, NUM_ACTIONS, UPGRADES, LayoutConfig, StateView

CardChooser = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(card_options int [N,3], state float [N,D]) -> chosen card index [N] in {0, 1, 2}."""

CARD_PRIORITY: dict[str, float] = {
    "projectile_count": 10.0,
    "damage": 9.0,
    "cooldown": 8.5,
    "max_hp": 7.0,
    "armor": 6.5,
    "area": 6.0,
    "regen": 5.5,
    "move_speed": 5.0,
    "magnet": 4.0,
    "xp_gain": 3.0,
    "luck": 2.0,
}
_DIRS = np.array(MOVES[1:], dtype=np.float32)  # [8, 2] unit vectors of moves 1..8


def _cards(view: StateView[np.ndarray], info: dict[str, Any] | None) -> np.ndarray:
    if info is not None and "card_options" in info:
        return np.asarray(info["card_options"], dtype=np.int64).reshape(-1, 3)
    return view.cards


def priority_cards(cards: np.ndarray, state: np.ndarray, cfg: LayoutConfig) -> np.ndarray:
    """Pick the card with the best priority, discounted by how often that upgrade was already taken."""
    view = StateView(state, cfg)
    prio = np.array([CARD_PRIORITY[u] for u in UPGRADES], dtype=np.float32)
    score = prio[None, :] - 1.5 * view.upgrade_counts
    low = view.hp_frac < 0.5
    score[low, UPGRADES.index("max_hp")] += 4.0
    score[low, UPGRADES.index("regen")] += 3.0
    card_scores = np.take_along_axis(score, cards, axis=1)
    return card_scores.argmax(1)


class ScriptedExpert:
    """Kites away from nearby enemies (bosses and elites weigh more), avoids walls, collects gems, dashes
    out of contact, and picks cards by priority (or via `card_chooser`, e.g. a System 2 planner)."""

    def __init__(
        self,
        config: ArenaConfig | None = None,
        card_chooser: CardChooser | None = None,
        danger_radius: float = 4.5,
        wall_margin: float = 6.0,
        gem_weight: float = 3.0,
        gem_safe_distance: float = 1.2,
    ) -> None:
        self.cfg = config or ArenaConfig()
        self.card_chooser = card_chooser
        self.danger_radius = danger_radius
        self.gem_weight = gem_weight
        self.gem_safe_distance = gem_safe_distance
        self.wall_margin = wall_margin

    def __call__(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> np.ndarray:
        st = np.asarray(obs["state"], dtype=np.float32)
        view = StateView(st, self.cfg)
        nearest = nearest_enemy_distance(view)
        desire = self.kite_push(view, self.danger_radius) + self.wall_push(view)
        desire += self.gem_pull(view, nearest, self.gem_weight, self.gem_safe_distance)
        threat = nearest < self.cfg.enemy_radius + self.cfg.player_radius + 0.6
        return self.act_on(view, info, desire, threat)

    # ---- the steering terms, each [N, 2] in world axes (IntentExpert weighs them per row) --------------
    def kite_push(self, view: StateView[np.ndarray], danger_radius: float | np.ndarray) -> np.ndarray:
        """Away from the nearest enemies: strongly inside `danger_radius` (doubled for bosses; a scalar or one
        per row), weakly (1/distance) beyond; elites and bosses weigh more."""
        rel = view.enemy_offset
        dist = np.maximum(view.enemy_distance, 0.3)
        elite, boss = view.enemy("elite"), view.enemy("boss")
        weight = (1.0 + 1.5 * elite + 4.0 * boss) * view.enemy_valid
        radius = np.asarray(danger_radius, dtype=np.float32).reshape(-1, 1)
        close = np.clip(radius * (1 + boss) - dist, 0.0, None)
        push = -(rel / dist[..., None]) * (weight * (close + 0.5 / dist))[..., None]
        return push.sum(1)

    def wall_push(self, view: StateView[np.ndarray]) -> np.ndarray:
        """Away from walls closer than `wall_margin`, plus a weak pull toward the arena's centre."""
        pos, A, m = view.position, self.cfg.arena_size, self.wall_margin
        wall = np.clip(m - pos, 0, None) - np.clip(pos - (A - m), 0, None)
        return wall * 1.2 + (A / 2 - pos) * 0.02

    def gem_pull(
        self, view: StateView[np.ndarray], nearest: np.ndarray, weight: float | np.ndarray,
        safe_distance: float | np.ndarray,
    ) -> np.ndarray:
        """Toward the nearest gem with strength `weight`, faded out while an enemy is within `safe_distance`."""
        g_rel = view.gem_offset[:, 0]
        g_ok = view.gem_valid[:, 0]
        safe = np.clip((nearest - safe_distance) / 3.0, 0.0, 1.0)
        g_dist = np.linalg.norm(g_rel, axis=1) + 1e-6
        return (g_rel / g_dist[:, None]) * (g_ok * safe * weight)[:, None]

    def act_on(
        self, view: StateView[np.ndarray], info: dict[str, Any] | None, desire: np.ndarray, dash: np.ndarray,
        card_chooser: CardChooser | None = None,
    ) -> np.ndarray:
        """Flat actions: the move closest to `desire` [N, 2] (stand where it is ~0), dashing where `dash` [N]
        and the dash is ready; a card where the menu is open (`card_chooser`, else this expert's own)."""
        n = view.x.shape[0]
        menu = view.menu_open
        actions = np.zeros(n, dtype=np.int64)
        if menu.any():
            cards = _cards(view, info)
            chooser = card_chooser or self.card_chooser
            pick = chooser(cards, view.x) if chooser is not None else priority_cards(cards, view.x, self.cfg)
            actions[menu] = CARD_BASE + np.asarray(pick, dtype=np.int64)[menu]
        move = (desire @ _DIRS.T).argmax(1) + 1
        idle = np.linalg.norm(desire, axis=1) < 0.05
        move[idle] = 0
        moves = move + DASH * (view.dash_ready & dash & ~idle)
        actions[~menu] = moves[~menu]
        return actions


def nearest_enemy_distance(view: StateView[np.ndarray]) -> np.ndarray:
    """[N] distance to the nearest enemy in world units (inf where none is listed)."""
    valid = view.enemy_valid
    dist = np.maximum(view.enemy_distance, 0.3)
    return np.where(valid.any(1), np.where(valid, dist, np.inf).min(1), np.inf)


class RandomPolicy:
    """Uniform random over all NUM_ACTIONS Arena actions (so random play also picks cards at random)."""

    def __init__(self, seed: int = 0, num_actions: int = NUM_ACTIONS) -> None:
        self.rng = np.random.default_rng(seed)
        self.num_actions = num_actions

    def __call__(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> np.ndarray:
        n = np.asarray(obs["state"]).shape[0]
        return self.rng.integers(0, self.num_actions, size=n, dtype=np.int64)
