"""Actions on the bridge: MetaBonk's flat discrete index <-> the structured controls a real game applies.

Layout "arena-21" (docs/architecture.md): a < 18 moves in direction a % 9 (0 = stand, 1..8 = E, NE, N, NW, W,
SW, S, SE; move vector x = right, y = up) with dash = a // 9; a in {18, 19, 20} clicks level-up option a - 18.
Every step message carries both forms, so a MetaBonk env served over the bridge round-trips exactly and a game
plugin can ignore `discrete`.
"""

from __future__ import annotations

import math
from typing import Any

from metabonk.envs.arena.spec import (
    CARD_BASE,
    MOVES,
    NUM_ACTIONS,
    NUM_CARDS,
    NUM_DIRECTIONS,
    dashes,
    direction_of,
    move_action,
)
from metabonk.envs.bridge.protocol import ProtocolError

ARENA_LAYOUT = f"arena-{NUM_ACTIONS}"
ARENA_NUM_ACTIONS = NUM_ACTIONS
_NUM_DIRS = NUM_DIRECTIONS - 1  # directions around the circle (0 stands)
_DEAD_ZONE = 0.25


def discrete_to_action(a: int, layout: str, num_actions: int) -> dict[str, Any]:
    """The step message's action object for flat action `a` (structured fields only for 'arena-21')."""
    if not 0 <= a < num_actions:
        raise ProtocolError("bad_action", f"action {a} outside [0, {num_actions})")
    action: dict[str, Any] = {"discrete": int(a)}
    if layout != ARENA_LAYOUT:
        return action
    if a >= CARD_BASE:
        action["ui_click"] = {"option": a - CARD_BASE}
        action["move"] = [0.0, 0.0]
        action["buttons"] = {"dash": False}
        return action
    action["move"] = list(MOVES[direction_of(a)])
    action["buttons"] = {"dash": dashes(a)}
    return action


def action_to_discrete(action: dict[str, Any], layout: str, num_actions: int) -> int:
    """The flat action a served MetaBonk env takes for a step message's action object.

    `discrete` wins when present; otherwise (layout 'arena-21' only) a ui_click option picks a card, and the
    move vector is snapped to the nearest of 8 directions (stand inside the dead zone) with the dash button.
    """
    if "discrete" in action:
        a = int(action["discrete"])
        if a >= num_actions:
            raise ProtocolError("bad_action", f"discrete action {a} outside [0, {num_actions})")
        return a
    if layout != ARENA_LAYOUT:
        raise ProtocolError("bad_action",
                            f"this game ({layout}) needs a 'discrete' action in [0, {num_actions})")
    click = action.get("ui_click")
    if isinstance(click, dict) and "option" in click:
        k = int(click["option"])
        if not 0 <= k < NUM_CARDS:
            raise ProtocolError("bad_action", f"ui_click option {k} outside 0..{NUM_CARDS - 1}")
        return CARD_BASE + k
    dash = bool(action.get("buttons", {}).get("dash", False))
    x, y = action.get("move", [0.0, 0.0])
    if math.hypot(x, y) < _DEAD_ZONE:
        direction = 0
    else:
        direction = 1 + round(math.atan2(y, x) / (2 * math.pi / _NUM_DIRS)) % _NUM_DIRS
    return move_action(direction, dash)
