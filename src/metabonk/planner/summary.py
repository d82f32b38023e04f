"""The compact game-state summary System 2 reads (HP, level, build, threats, time) as one line of text,
and how it is read from Arena's state vector (`summaries_from_state`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from metabonk.envs.arena.spec import TICKS_PER_SECOND, UPGRADES, LayoutConfig, StateView

NEAR_DISTANCE = 6.0
"""World units within which an enemy counts as near (the summary's threat level)."""


@dataclass
class GameSummary:
    """What the planner knows at a decision point; built from Arena's state/info or any bridged game."""

    hp: float
    max_hp: float
    level: int
    time_s: float
    time_limit_s: float = 600.0
    build: dict[str, int] = field(default_factory=dict)
    enemies_near: int = 0
    boss: bool = False
    kills: int = 0

    @property
    def hp_frac(self) -> float:
        return max(0.0, min(1.0, self.hp / max(self.max_hp, 1e-6)))

    def threat(self) -> str:
        if self.boss:
            return "boss"
        if self.enemies_near >= 8:
            return "high"
        if self.enemies_near >= 3:
            return "medium"
        return "low"

    def text(self) -> str:
        build = ", ".join(f"{k} x{v}" for k, v in sorted(self.build.items())) or "none"
        return (
            f"HP {self.hp:.0f}/{self.max_hp:.0f} ({self.hp_frac:.0%}), level {self.level}, "
            f"time {self.time_s:.0f}s of {self.time_limit_s:.0f}s, threat {self.threat()} "
            f"({self.enemies_near} enemies near{', boss' if self.boss else ''}), build: {build}"
        )


def summaries_from_state(state: np.ndarray, cfg: LayoutConfig) -> list[GameSummary]:
    """One GameSummary per row of Arena state vectors [N, D] (read through the spec's `StateView`)."""
    view = StateView(np.asarray(state), cfg)
    near = (view.enemy_valid & (view.enemy_distance < NEAR_DISTANCE)).sum(-1)
    picks, max_hp, boss = view.upgrade_counts, view.max_hp, view.boss_alive
    hp_frac, level, time_frac = view.hp_frac, view.level, view.time_frac
    stage_s = cfg.stage_steps / TICKS_PER_SECOND
    out = []
    for i in range(view.x.shape[0]):
        out.append(
            GameSummary(
                hp=float(hp_frac[i]) * float(max_hp[i]),
                max_hp=float(max_hp[i]),
                level=round(float(level[i])),
                time_s=float(time_frac[i]) * cfg.stage_steps / TICKS_PER_SECOND,
                time_limit_s=stage_s,
                build={u: round(float(picks[i, k])) for k, u in enumerate(UPGRADES) if picks[i, k] > 0},
                enemies_near=int(near[i]),
                boss=bool(boss[i]),
            )
        )
    return out
