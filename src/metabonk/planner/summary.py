"""The compact game-state summary System 2 reads (HP, level, build, threats, time) as one line of text."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


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


def build_from_picks(picks: list[str]) -> dict[str, int]:
    """Count of each upgrade name taken so far."""
    return dict(Counter(picks))
