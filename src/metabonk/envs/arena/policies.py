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
        n = st.shape[0]
        c, A = self.cfg, self.cfg.arena_size
        menu = view.menu_open
        actions = np.zeros(n, dtype=np.int64)
        if menu.any():
            cards = _cards(view, info)
            chooser = self.card_chooser
            pick = chooser(cards, st) if chooser is not None else priority_cards(cards, st, c)
            actions[menu] = CARD_BASE + np.asarray(pick, dtype=np.int64)[menu]

        rel = view.enemy_offset
        dist = np.maximum(view.enemy_distance, 0.3)
        valid = view.enemy_valid
        elite, boss = view.enemy("elite"), view.enemy("boss")
        weight = (1.0 + 1.5 * elite + 4.0 * boss) * valid
        close = np.clip(self.danger_radius * (1 + boss) - dist, 0.0, None)
        push = -(rel / dist[..., None]) * (weight * (close + 0.5 / dist))[..., None]
        desire = push.sum(1)

        pos = view.position
        m = self.wall_margin
        wall = np.clip(m - pos, 0, None) - np.clip(pos - (A - m), 0, None)
        desire += wall * 1.2
        desire += (A / 2 - pos) * 0.02

        g_rel = view.gem_offset[:, 0]  # the nearest gem
        g_ok = view.gem_valid[:, 0]
        nearest = np.where(valid.any(1), np.where(valid, dist, np.inf).min(1), np.inf)
        safe = np.clip((nearest - self.gem_safe_distance) / 3.0, 0.0, 1.0)
        g_dist = np.linalg.norm(g_rel, axis=1) + 1e-6
        desire += (g_rel / g_dist[:, None]) * (g_ok * safe * self.gem_weight)[:, None]

        score = desire @ _DIRS.T
        move = score.argmax(1) + 1
        idle = np.linalg.norm(desire, axis=1) < 0.05
        move[idle] = 0
        threat = nearest < c.enemy_radius + c.player_radius + 0.6
        dash = view.dash_ready & threat & ~idle
        moves = move + DASH * dash
        actions[~menu] = moves[~menu]
        return actions


class RandomPolicy:
    """Uniform random over all NUM_ACTIONS Arena actions (so random play also picks cards at random)."""

    def __init__(self, seed: int = 0, num_actions: int = NUM_ACTIONS) -> None:
        self.rng = np.random.default_rng(seed)
        self.num_actions = num_actions

    def __call__(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> np.ndarray:
        n = np.asarray(obs["state"]).shape[0]
        return self.rng.integers(0, self.num_actions, size=n, dtype=np.int64)
