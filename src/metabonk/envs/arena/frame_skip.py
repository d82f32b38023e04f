"""Frame skip (action repeat) for the Arena game: how one env step's outputs are made from consecutive ticks'."""

from __future__ import annotations

import torch

StepOut = tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]
"""(reward, terminated, truncated, info) of one tick or step, all tensors over the N games."""

_LAST_TICK = ("menu_open", "card_options")
"""Info keys that describe the state after the step (taken from the last tick, not summed)."""


def add_ticks(a: StepOut, b: StepOut) -> StepOut:
    """One env step's outputs from two consecutive ticks' (frame skip): rewards and counts add up, the end
    flags of either tick hold, a card picked on either tick is kept, the menu state is the later tick's."""
    info = {}
    for k, v in b[3].items():
        if k in _LAST_TICK:
            info[k] = v
        elif k == "card_picked":
            info[k] = torch.maximum(a[3][k], v)  # -1 where no card was picked
        else:
            info[k] = a[3][k] + v
    return a[0] + b[0], a[1] | b[1], a[2] | b[2], info
