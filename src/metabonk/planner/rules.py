"""The rule-based strategy route: card scores from a survival prior plus what the playbook has learned."""

from __future__ import annotations

import re

from metabonk.planner.playbook import Entry
from metabonk.planner.summary import GameSummary

# Survival-first prior by keyword of the upgrade name (Arena names vary in spelling; match loosely).
PRIOR: tuple[tuple[str, float], ...] = (
    ("armor", 1.0),
    ("max_hp", 0.9),
    ("hp", 0.9),
    ("health", 0.9),
    ("regen", 0.8),
    ("damage", 0.7),
    ("cooldown", 0.6),
    ("projectile", 0.6),
    ("count", 0.6),
    ("move", 0.5),
    ("speed", 0.5),
    ("area", 0.45),
    ("size", 0.45),
    ("magnet", 0.3),
    ("xp", 0.25),
    ("luck", 0.15),
)
DIMINISH = 0.15
PLAYBOOK_WEIGHT = 1.0


def card_tag(name: str) -> str:
    """The playbook tag for an upgrade: 'card:<name>'."""
    return f"card:{name}"


def prior_score(name: str) -> float:
    key = re.sub(r"[^a-z_]", "_", name.lower())
    for word, score in PRIOR:
        if word in key:
            return score
    return 0.4


def playbook_score(name: str, entries: list[Entry]) -> float:
    """Net playbook evidence for an upgrade: in [-1, 1] per entry tagged with it, summed."""
    tag = card_tag(name)
    total = 0.0
    for e in entries:
        if tag in e.tags:
            total += (e.helpful - e.harmful) / (e.helpful + e.harmful + 2)
    return total


def score_card(name: str, summary: GameSummary, entries: list[Entry], use_prior: bool = True) -> float:
    taken = summary.build.get(name, 0)
    s = prior_score(name) if use_prior else 0.0
    if name.lower().startswith(("max_hp", "regen", "armor")) and summary.hp_frac < 0.5:
        s += 0.2
    return s - DIMINISH * taken + PLAYBOOK_WEIGHT * playbook_score(name, entries)


def rule_card(options: list[str], summary: GameSummary, entries: list[Entry], use_prior: bool = True) -> int:
    """Index of the best-scoring offered card (ties go to the first)."""
    scores = [score_card(o, summary, entries, use_prior) for o in options]
    return max(range(len(options)), key=lambda i: scores[i])


def rule_intent(summary: GameSummary) -> str:
    """A sensible intent from the summary alone."""
    if summary.hp_frac < 0.3:
        return "flee" if summary.enemies_near >= 3 or summary.boss else "heal"
    if summary.boss:
        return "fight_boss" if summary.hp_frac > 0.6 and summary.level >= 5 else "kite"
    if summary.enemies_near >= 5:
        return "kite"
    if summary.enemies_near == 0:
        return "explore" if summary.time_s > 30 else "collect_xp"
    return "collect_xp"
