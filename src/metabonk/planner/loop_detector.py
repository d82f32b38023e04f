"""Loop detection for System 1: a window of play that visits at most a couple of quantised states is a loop,
and it is broken first by an intent change, then (if still stuck) by a few escape moves.

The quantised state of a tick is (player cell x, player cell y, XP-progress bucket) read through `StateView`:
cells of `cell` world units, buckets of `xp_step` levels (level + xp/xp_next). HP is left out on purpose:
regeneration and contact damage make it drift while the player stands still or presses into a wall, and a
player who is pinned and hit is just as stuck. Over the last `window` game ticks (menu ticks are not fed in:
the game is paused), at most `max_states` distinct states is a loop: one state is a *stall* (nothing
changes), two or more a *cycle* (e.g. stepping back and forth across a cell edge).

Escalation (`LoopGuard`): loop → force an intent other than the current one for the next window; a loop again
within that window → `perturb_ticks` of escape moves (toward the arena centre, each leg a random one of the
three directions nearest to it, dashing when ready); a loop after that → escape moves again. A full window
without a loop after a break counts it as resolved (by the intent change or by the perturbation).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from metabonk.common.intents import INTENTS
from metabonk.envs.arena.spec import MOVES, LayoutConfig, StateView, move_action


@dataclass
class LoopConfig:
    """Tunables of loop detection and breaking (ticks are game ticks, 60 per second)."""

    window: int = 120
    """Ticks looked back over (2 s)."""
    max_states: int = 2
    """A full window with at most this many distinct quantised states is a loop."""
    cell: float = 1.0
    """Position cell side, world units (the player moves 0.25 units a tick at base speed)."""
    xp_step: float = 0.25
    """XP-progress bucket, in levels."""
    perturb_ticks: int = 40
    """Escape moves sent per perturbation."""
    leg_ticks: int = 10
    """Escape moves keep one direction this long."""
    escape_intents: tuple[str, ...] = ("explore", "flee", "collect_xp", "kite")
    """Intents tried by an intent break, first one that differs from the current intent."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.window < 2 or self.max_states < 1 or self.perturb_ticks < 1 or self.leg_ticks < 1:
            raise ValueError("LoopConfig needs window >= 2, max_states >= 1, perturb_ticks >= 1, leg_ticks >= 1")
        if self.cell <= 0 or self.xp_step <= 0:
            raise ValueError("LoopConfig cell and xp_step must be positive")
        unknown = [i for i in self.escape_intents if i not in INTENTS]
        if unknown or not self.escape_intents:
            raise ValueError(f"escape_intents must be non-empty intents of {INTENTS}, got {self.escape_intents}")


def quantised_state(view: StateView[np.ndarray], cfg: LoopConfig) -> tuple[int, int, int]:
    """(cell x, cell y, XP bucket) of one state vector [D]."""
    x, y = (float(v) for v in view.position)
    progress = float(view.level) + float(view.player("xp_frac"))
    return math.floor(x / cfg.cell), math.floor(y / cfg.cell), math.floor(progress / cfg.xp_step)


class LoopDetector:
    """Sliding-window count of distinct quantised states; `observe` says 'stall', 'cycle' or None."""

    def __init__(self, cfg: LoopConfig, arena_cfg: LayoutConfig) -> None:
        self.cfg, self.arena_cfg = cfg, arena_cfg
        self._keys: deque[tuple[int, int, int]] = deque()
        self._count: Counter[tuple[int, int, int]] = Counter()

    def clear(self) -> None:
        self._keys.clear()
        self._count.clear()

    def observe(self, state: np.ndarray) -> str | None:
        key = quantised_state(StateView(state, self.arena_cfg), self.cfg)
        self._keys.append(key)
        self._count[key] += 1
        if len(self._keys) > self.cfg.window:
            old = self._keys.popleft()
            self._count[old] -= 1
            if not self._count[old]:
                del self._count[old]
        if len(self._keys) < self.cfg.window or len(self._count) > self.cfg.max_states:
            return None
        return "stall" if len(self._count) == 1 else "cycle"


@dataclass
class LoopBreak:
    """What the guard asks of this tick: an intent to force and/or a move to send instead of System 1's."""

    intent: int | None = None
    action: int | None = None


class LoopGuard:
    """Detects loops and escalates the breaks; `counts` holds loops, stalls, cycles, breaks and resolutions."""

    def __init__(self, cfg: LoopConfig, arena_cfg: LayoutConfig) -> None:
        self.cfg, self.arena_cfg = cfg, arena_cfg
        self.detector = LoopDetector(cfg, arena_cfg)
        self.rng = np.random.default_rng(cfg.seed)
        self.counts: Counter[str] = Counter()
        self.reset()

    def reset(self) -> None:
        """A new episode: no break in progress."""
        self.detector.clear()
        self.level = 0  # 0 normal, 1 intent forced, 2 after a perturbation
        self._forced: int | None = None
        self._perturb_left = self._leg_left = self._since_break = 0
        self._direction = 0

    def step(self, state: np.ndarray, intent: int | None) -> LoopBreak:
        """One game tick (menu closed) at state vector [D]; `intent` is the one System 1 would get."""
        if self._perturb_left > 0:
            self._perturb_left -= 1
            self.counts["loop_perturb_ticks"] += 1
            return LoopBreak(self._forced, self._escape(state))
        kind = self.detector.observe(state)
        if kind is None:
            self._since_break += 1
            if self.level and self._since_break >= self.cfg.window:
                self.counts["loops_resolved_by_intent" if self.level == 1 else "loops_resolved_by_perturbation"] += 1
                self.level, self._forced = 0, None
            return LoopBreak(self._forced)
        self.counts["loops_detected"] += 1
        self.counts[f"loop_{kind}s"] += 1
        self.detector.clear()
        self._since_break = 0
        if self.level == 0:
            self.level = 1
            current = INTENTS[intent] if intent is not None else None
            name = next((i for i in self.cfg.escape_intents if i != current), self.cfg.escape_intents[0])
            self._forced = INTENTS.index(name)
            self.counts["loop_intent_breaks"] += 1
            return LoopBreak(self._forced)
        self.level = 2
        self.counts["loop_perturbations"] += 1
        self._perturb_left, self._leg_left = self.cfg.perturb_ticks - 1, 0
        self.counts["loop_perturb_ticks"] += 1
        return LoopBreak(self._forced, self._escape(state))

    def _escape(self, state: np.ndarray) -> int:
        """An escape move: legs of `leg_ticks` in one of the 3 directions nearest to 'toward the centre'."""
        view = StateView(state, self.arena_cfg)
        if self._leg_left <= 0:
            to_centre = self.arena_cfg.arena_size / 2 - np.asarray(view.position, dtype=np.float64)
            dirs = np.asarray(MOVES[1:])
            if np.linalg.norm(to_centre) < 1.0:  # at the centre: any direction
                self._direction = int(self.rng.integers(1, len(MOVES)))
            else:
                best = np.argsort(-(dirs @ to_centre))[:3]
                self._direction = int(self.rng.choice(best)) + 1
            self._leg_left = self.cfg.leg_ticks
        self._leg_left -= 1
        return move_action(self._direction, dash=bool(view.dash_ready))
