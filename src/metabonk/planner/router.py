"""Mixture-of-reasonings router: a UCB1 bandit picks direct / step-by-step / rule by episode outcome."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from metabonk.planner.playbook import PlaybookStore

ROUTES: tuple[str, ...] = ("direct", "cot", "rule")


@dataclass
class Router:
    """UCB1 over reasoning routes; reward in [0, 1] (e.g. fraction of the stage survived)."""

    routes: tuple[str, ...] = ROUTES
    c: float = 0.5
    counts: dict[str, int] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)

    def choose(self) -> str:
        for r in self.routes:
            if self.counts.get(r, 0) == 0:
                return r
        n = sum(self.counts.get(r, 0) for r in self.routes)
        return max(self.routes, key=lambda r: self.mean(r) + self.c * math.sqrt(math.log(n) / self.counts[r]))

    def update(self, route: str, reward: float) -> None:
        if route not in self.routes:
            raise ValueError(f"unknown route '{route}' (known: {', '.join(self.routes)})")
        self.counts[route] = self.counts.get(route, 0) + 1
        self.totals[route] = self.totals.get(route, 0.0) + float(reward)

    def mean(self, route: str) -> float:
        n = self.counts.get(route, 0)
        return self.totals.get(route, 0.0) / n if n else 0.0

    def best(self) -> str:
        """The route with the highest mean outcome so far (exploitation only)."""
        tried = [r for r in self.routes if self.counts.get(r, 0)]
        return max(tried, key=self.mean) if tried else self.routes[0]

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {"counts": dict(self.counts), "totals": dict(self.totals)}

    @classmethod
    def from_dict(cls, d: dict[str, dict[str, float]], c: float = 0.5) -> Router:
        return cls(
            c=c,
            counts={k: int(v) for k, v in d.get("counts", {}).items()},
            totals={k: float(v) for k, v in d.get("totals", {}).items()},
        )


def load_router(store: PlaybookStore, c: float = 0.5) -> Router:
    """The router's statistics as last saved beside the playbook (a fresh router when none)."""
    raw = store.get_meta("router")
    return Router.from_dict(json.loads(raw), c=c) if raw else Router(c=c)


def save_router(store: PlaybookStore, router: Router) -> None:
    store.set_meta("router", json.dumps(router.to_dict()))
