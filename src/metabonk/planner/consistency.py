"""Self-consistency: sample several answers and keep the majority (ties broken by first occurrence)."""

from __future__ import annotations

from collections import Counter
from typing import Any


def majority(answers: list[Any]) -> tuple[Any, float]:
    """The most frequent answer and its share of the votes; raises ValueError on no answers."""
    if not answers:
        raise ValueError("no answers to vote on")
    counts = Counter(answers)
    best = max(counts.values())
    winner = next(a for a in answers if counts[a] == best)
    return winner, best / len(answers)
