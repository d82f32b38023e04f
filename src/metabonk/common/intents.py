"""The intent vocabulary System 2 uses to steer System 1 (shared by the planner and the policy)."""

from __future__ import annotations

INTENTS: tuple[str, ...] = ("kite", "collect_xp", "fight_boss", "flee", "heal", "explore")
"""Index i of this tuple is intent id i; the policy embeds the id, the planner emits the name."""

DEFAULT_INTENT = "kite"


def intent_id(name: str) -> int:
    """Id of an intent name; unknown names are a ValueError (callers fall back to the last intent)."""
    try:
        return INTENTS.index(name)
    except ValueError as e:
        raise ValueError(f"unknown intent '{name}' (known: {', '.join(INTENTS)})") from e
