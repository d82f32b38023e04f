"""System 1 played by a script: any batched Arena policy `(obs, info) -> actions [N]` behind the part of
`Agent`'s interface the two-systems controller uses (a baseline, a test probe, the expert in latency benches)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metabonk.envs.arena.spec import MOVE_ACTIONS
from metabonk.envs.torch_obs import Obs


@dataclass
class _ScriptedConfig:
    image_size: int = 64
    move_actions: int = MOVE_ACTIONS


class ScriptedSystem1:
    """A batched Arena policy `(obs, info) -> actions [N]` behind the part of Agent's interface the controller
    uses (intents are ignored; System 2's card override is applied). Default: the scripted expert."""

    def __init__(self, policy: Callable[[dict[str, Any], dict[str, Any] | None], np.ndarray] | None = None,
                 image_size: int = 64) -> None:
        from metabonk.envs.arena.policies import ScriptedExpert

        self.policy = policy if policy is not None else ScriptedExpert()
        self.cfg = _ScriptedConfig(image_size=image_size)

    def eval(self) -> ScriptedSystem1:
        return self

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> torch.Tensor:
        return torch.zeros(batch, 1)

    def act(self, obs: Obs, hidden: torch.Tensor, intent: Any = None, menu_open: torch.Tensor | None = None,
            greedy: bool = True, card_override: torch.Tensor | None = None,
            ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        np_obs = {"state": obs["state"].cpu().numpy()}
        info = {"card_options": obs["card_options"].cpu().numpy()} if "card_options" in obs else None
        action = torch.as_tensor(np.asarray(self.policy(np_obs, info), dtype=np.int64))
        if menu_open is not None and card_override is not None:
            pick = menu_open.cpu().bool() & (card_override.cpu() >= 0)
            action = torch.where(pick, self.cfg.move_actions + card_override.cpu().long(), action)
        return action, hidden, {}
