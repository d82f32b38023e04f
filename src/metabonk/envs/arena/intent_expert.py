"""An intent-parametrised scripted expert for Arena, and the random intent schedule its demos are recorded with.

`IntentExpert` weighs the ScriptedExpert's steering terms (kite push, wall push, gem pull) per row by the
style of that row's commanded intent (`metabonk.common.intents.INTENTS`) and adds the few terms an intent
needs beyond them: a pull toward a band around the nearest enemy (kite), toward the boss (fight_boss), toward
a wandering waypoint (explore). Level-up cards get a per-intent bonus on top of the expert's priorities.
It reads only `StateView` fields (and `info["card_options"]`), like the ScriptedExpert.

`IntentSchedule` switches each game's intent every few seconds (uniform random durations, a new intent each
time), so one recorded episode covers several; `ScheduledIntentExpert` plays the expert under a schedule and
exposes the intents it used (`last_intents`), which the recorder stores per step as `intent`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metabonk.common.intents import DEFAULT_INTENT, INTENTS, intent_id
from metabonk.envs.arena.config import ArenaConfig
from metabonk.envs.arena.policies import ScriptedExpert, nearest_enemy_distance, priority_cards
from metabonk.envs.arena.spec import TICKS_PER_SECOND, UPGRADES, StateView


@dataclass(frozen=True)
class IntentStyle:
    """Weights of the steering terms under one intent (world units; 0 turns a term off)."""

    danger_radius: float = 4.5
    """Kite push radius: enemies closer than this push strongly."""
    kite: float = 1.0
    """Weight of the push away from enemies."""
    gem: float = 0.0
    gem_safe_distance: float = 1.2
    band: float = 0.0
    """Distance to hold from the nearest enemy (pulled in from beyond it); 0 = no pull."""
    band_pull: float = 0.0
    boss: float = 0.0
    """Pull toward the nearest boss, holding `boss_distance` from it."""
    boss_distance: float = 3.0
    waypoint: float = 0.0
    """Pull toward a per-game waypoint that moves on once reached."""
    rest: bool = False
    """Stand still unless an enemy is within `rest_distance`."""
    rest_distance: float = 6.0
    dash_distance: float = 1.6
    """Dash (when ready) while the nearest enemy is closer than this."""
    cards: dict[str, float] = field(default_factory=dict)
    """Bonus added to these upgrades' card priorities."""


STYLES: dict[str, IntentStyle] = {
    "kite": IntentStyle(danger_radius=3.0, band=4.0, band_pull=0.8),
    "collect_xp": IntentStyle(danger_radius=1.2, kite=0.6, gem=6.0, gem_safe_distance=0.5, band=1.5, band_pull=1.0,
                              cards={"magnet": 6.0, "xp_gain": 6.0}),
    "fight_boss": IntentStyle(danger_radius=1.5, kite=0.5, boss=2.0, boss_distance=2.6, band=4.5, band_pull=0.8,
                              cards={"damage": 4.0, "cooldown": 4.0, "projectile_count": 3.0}),
    "flee": IntentStyle(danger_radius=6.5, kite=1.0, gem=1.0, dash_distance=2.0, cards={"move_speed": 8.0}),
    "heal": IntentStyle(danger_radius=5.0, kite=1.0, gem=3.0, gem_safe_distance=2.0, rest=True, rest_distance=5.0,
                        dash_distance=2.0, cards={"max_hp": 12.0, "regen": 10.0, "armor": 6.0}),
    "explore": IntentStyle(danger_radius=3.0, kite=1.0, waypoint=3.5, dash_distance=float("inf")),
}
"""The style of each intent in INTENTS (every intent has one)."""


def _column(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


class IntentExpert:
    """Batched `(obs, info, intents) -> actions [N]`: the ScriptedExpert's terms weighed by each row's intent.

    `intents` is an int array [N] of ids into INTENTS (default: `self.intents`, set by `set_intents`, else the
    default intent). The expert keeps one waypoint per game for explore (drawn from `seed`)."""

    def __init__(self, config: ArenaConfig | None = None, seed: int = 0,
                 styles: dict[str, IntentStyle] | None = None) -> None:
        self.base = ScriptedExpert(config)
        self.cfg = self.base.cfg
        styles = styles or STYLES
        missing = [name for name in INTENTS if name not in styles]
        if missing:
            raise ValueError(f"intent styles missing for {missing}")
        rows = [styles[name] for name in INTENTS]
        self.table = {f: _column([getattr(r, f) for r in rows])
                      for f in ("danger_radius", "kite", "gem", "gem_safe_distance", "band", "band_pull", "boss",
                                "boss_distance", "waypoint", "dash_distance", "rest_distance")}
        self.rest = np.array([r.rest for r in rows])
        self.card_bonus = np.zeros((len(INTENTS), len(UPGRADES)), dtype=np.float32)
        for i, r in enumerate(rows):
            for name, bonus in r.cards.items():
                self.card_bonus[i, UPGRADES.index(name)] = bonus
        self.rng = np.random.default_rng(seed)
        self.intents: np.ndarray | None = None
        self._waypoint: np.ndarray | None = None
        self._boss_at: np.ndarray | None = None
        """Last seen world position of a boss per game (NaN: none seen while one is alive)."""

    def set_intents(self, intents: np.ndarray) -> None:
        self.intents = np.asarray(intents, dtype=np.int64)

    def _waypoints(self, pos: np.ndarray) -> np.ndarray:
        A, n = self.cfg.arena_size, pos.shape[0]
        if self._waypoint is None or self._waypoint.shape[0] != n:
            self._waypoint = self.rng.uniform(0.15 * A, 0.85 * A, size=(n, 2)).astype(np.float32)
        reached = np.linalg.norm(self._waypoint - pos, axis=1) < 2.0
        if reached.any():  # the next one lies in the opposite half of the arena, so explore crosses it
            far = A - pos[reached] + self.rng.uniform(-0.15 * A, 0.15 * A, size=(int(reached.sum()), 2))
            self._waypoint[reached] = np.clip(far, 0.15 * A, 0.85 * A)
        return self._waypoint

    def __call__(self, obs: dict[str, Any], info: dict[str, Any] | None = None,
                 intents: np.ndarray | None = None) -> np.ndarray:
        st = np.asarray(obs["state"], dtype=np.float32)
        view = StateView(st, self.cfg)
        n = st.shape[0]
        if intents is None:
            intents = self.intents if self.intents is not None else np.full(n, intent_id(DEFAULT_INTENT))
        it = np.asarray(intents, dtype=np.int64).reshape(n)
        w = {k: v[it] for k, v in self.table.items()}
        base = self.base
        nearest = nearest_enemy_distance(view)
        desire = base.kite_push(view, w["danger_radius"]) * w["kite"][:, None] + base.wall_push(view)
        desire += base.gem_pull(view, nearest, w["gem"], w["gem_safe_distance"])
        desire += self._toward_nearest(view, nearest, w["band"], w["band_pull"], w["boss"])
        desire += self._toward_boss(view, w["boss_distance"]) * w["boss"][:, None]
        pos = view.position
        to_wp = self._waypoints(pos) - pos
        desire += to_wp / (np.linalg.norm(to_wp, axis=1, keepdims=True) + 1e-6) * w["waypoint"][:, None]
        resting = self.rest[it] & (nearest > w["rest_distance"])
        desire[resting] = 0.0
        dash = nearest < w["dash_distance"]

        def cards(options: np.ndarray, state: np.ndarray) -> np.ndarray:
            scores = np.zeros(options.shape, dtype=np.float32)
            pick = priority_cards(options, state, self.cfg)
            scores[np.arange(n), pick] = 1.0  # the expert's own pick wins ties; bonuses outweigh it
            return (scores + np.take_along_axis(self.card_bonus[it], options, axis=1)).argmax(1)

        return base.act_on(view, info, desire, dash, card_chooser=base.card_chooser or cards)

    @staticmethod
    def _toward_nearest(view: StateView[np.ndarray], nearest: np.ndarray, band: np.ndarray, pull: np.ndarray,
                        boss: np.ndarray) -> np.ndarray:
        """Toward the nearest enemy while it is farther than `band` (rows steering to a living boss skip it)."""
        valid = view.enemy_valid
        k = np.where(valid, view.enemy_distance, np.inf).argmin(1)
        rel = view.enemy_offset[np.arange(len(k)), k]
        unit = rel / (np.linalg.norm(rel, axis=1, keepdims=True) + 1e-6)
        gap = np.clip(np.where(np.isfinite(nearest), nearest, 0.0) - band, 0.0, 2.0) * (band > 0)
        gap = gap * ~((boss > 0) & view.boss_alive)
        return unit * (gap * pull)[:, None]

    def _toward_boss(self, view: StateView[np.ndarray], hold: np.ndarray) -> np.ndarray:
        """Toward the nearest listed boss, holding `hold` units from it (pushed back inside). A living boss
        crowded out of the K nearest is sought where it was last seen; 0 where no boss is alive."""
        pos = view.position
        n = pos.shape[0]
        if self._boss_at is None or self._boss_at.shape[0] != n:
            self._boss_at = np.full((n, 2), np.nan, dtype=np.float32)
        is_boss = view.enemy_valid & (view.enemy("boss") > 0.5)
        dist = np.where(is_boss, view.enemy_distance, np.inf)
        k = dist.argmin(1)
        rows = np.arange(n)
        seen = is_boss.any(1)
        self._boss_at[seen] = pos[seen] + view.enemy_offset[rows, k][seen]
        self._boss_at[~view.boss_alive] = np.nan
        rel = np.nan_to_num(self._boss_at - pos)
        d = np.linalg.norm(rel, axis=1)
        unit = rel / (d[:, None] + 1e-6)
        known = np.isfinite(self._boss_at[:, 0])
        return unit * (np.clip(d - hold, -2.0, 2.0) * known)[:, None]


class IntentSchedule:
    """Per-game intents that switch at random: each lasts a uniform [min_s, max_s] seconds of ticks, then a
    different intent (uniform over the others) takes over. `step()` advances one tick and returns ids [N]."""

    def __init__(self, num_envs: int, seed: int = 0, min_s: float = 2.0, max_s: float = 6.0) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"intent durations need 0 < min_s <= max_s, got {min_s}, {max_s}")
        self.rng = np.random.default_rng(seed)
        self.lo, self.hi = int(min_s * TICKS_PER_SECOND), int(max_s * TICKS_PER_SECOND)
        self.current = self.rng.integers(0, len(INTENTS), size=num_envs)
        self.left = self.rng.integers(self.lo, self.hi + 1, size=num_envs)

    def step(self) -> np.ndarray:
        due = self.left <= 0
        if due.any():
            k = int(due.sum())
            shift = self.rng.integers(1, len(INTENTS), size=k)  # never the same intent again
            self.current[due] = (self.current[due] + shift) % len(INTENTS)
            self.left[due] = self.rng.integers(self.lo, self.hi + 1, size=k)
        self.left -= 1
        return self.current.copy()


class ScheduledIntentExpert:
    """The intent expert under a random schedule: a plain `(obs, info) -> actions` policy for recording, whose
    `last_intents` [N] are the intents the last actions followed."""

    def __init__(self, num_envs: int, config: ArenaConfig | None = None, seed: int = 0,
                 min_s: float = 2.0, max_s: float = 6.0) -> None:
        self.expert = IntentExpert(config, seed=seed)
        self.schedule = IntentSchedule(num_envs, seed=seed, min_s=min_s, max_s=max_s)
        self.last_intents = self.schedule.current.copy()

    def __call__(self, obs: dict[str, Any], info: dict[str, Any] | None = None) -> np.ndarray:
        self.last_intents = self.schedule.step()
        return self.expert(obs, info, self.last_intents)

    def step_extras(self) -> dict[str, np.ndarray]:
        """Per-step arrays the recorder stores beside the actions (the commanded intent)."""
        return {"intent": self.last_intents}
