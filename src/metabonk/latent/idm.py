"""Inverse dynamics model (VPT-style): the real action taken between x_t and x_{t+1}, from a short window."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metabonk.common.checkpoint import Checkpointed
from metabonk.envs.arena.spec import NUM_ACTIONS
from metabonk.latent.frames import clip_windows, to_unit
from metabonk.latent.lam import ActionEncoder, LAMConfig
from metabonk.latent.vq import VQConfig

if TYPE_CHECKING:
    from metabonk.latent.data import TransitionData

KIND = "idm"


@dataclass
class IDMConfig:
    """Shape of the inverse dynamics model."""

    num_actions: int = NUM_ACTIONS
    """Size of the game's flat discrete action space (Arena's by default)."""
    movement: tuple[int, ...] = ()
    """Movement class of each action (Arena: a % 9, cards -> 0); empty means each action is its own class."""
    context: int = 1
    """Past frames besides x_t in the window (window = context + 2 + future frames)."""
    future: int = 0
    """Frames after x_{t+1} in the window (0 = causal). An inverse model may look ahead, as VPT's does: where a
    control sets acceleration and the emulator repeats a press at random (ALE's sticky actions), part of the
    press shows only a step later (Pong's paddle: docs/demo.md)."""
    width: int = 32
    """Base channel width."""
    frame_size: int = 64
    """Square frame size trained on (informational)."""
    crop: int = 0
    """Classify from a centred crop of this size (0 = the whole frame); see LAMConfig.crop."""
    dropout: float = 0.1
    """Dropout before the classifier (the IDM is trained on few labels)."""
    max_shift: int = 2
    """Largest pixel shift of the motion cost volume (see LAMConfig.max_shift)."""
    object_shift: int = 0
    """Object-motion features of the trunk (see LAMConfig.object_shift; 0 = off)."""
    object_pool: str = "cells"
    """Pooling of the object-motion features (see LAMConfig.object_pool): "cells" or "stripes"."""
    features: int = 64
    """Width of the trunk's output."""
    trunk: str = "pooled"
    """Conv branch of the trunk (see LAMConfig.trunk): "pooled" or "fullres" (small moving objects)."""
    temperature: float = 1.0
    """Softmax temperature of the action probabilities `predict` returns (1 = as trained; fitted on held-out
    labels by `latent.calibrate`, so soft labels are calibrated probabilities). Argmax actions do not depend on it."""

    @property
    def window(self) -> int:
        return self.context + 2 + self.future

    def movement_index(self) -> torch.Tensor:
        return torch.tensor(self.movement or tuple(range(self.num_actions)), dtype=torch.int64)


class InverseDynamicsModel(Checkpointed, nn.Module):
    """Conv net over the window and x_{t+1} - x_t -> logits of the action and of the effective movement."""

    KIND = KIND
    CONFIG = IDMConfig

    def __init__(self, config: IDMConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("move_of", config.movement_index(), persistent=False)
        # The LAM's encoder (motion cost volume + conv branch) as trunk: the same evidence, a wider output.
        # With look-ahead the trunk sees a longer window; its x_t / x_{t+1} pair sits at `context`, not at the end.
        trunk_cfg = LAMConfig(context=config.context + config.future, width=config.width, max_shift=config.max_shift,
                              object_shift=config.object_shift, object_pool=config.object_pool, trunk=config.trunk,
                              crop=config.crop, frame_size=config.frame_size, vq=VQConfig(code_dim=config.features))
        self.trunk = ActionEncoder(trunk_cfg, now_index=config.context)
        self.head = nn.Sequential(nn.SiLU(), nn.Dropout(config.dropout),
                                  nn.Linear(config.features, config.num_actions + self.num_movements))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def num_movements(self) -> int:
        return int(self.move_of.max()) + 1

    def logits(self, frames: torch.Tensor) -> torch.Tensor:
        c, size = self.config.crop, frames.shape[-2]
        if 0 < c < size:
            o = (size - c) // 2
            frames = frames[..., o: o + c, o: o + c, :]
        x = to_unit(frames.to(self.device))
        if x.shape[1] != self.config.window:
            raise ValueError(f"IDM expects windows of {self.config.window} frames, got {x.shape[1]}")
        return self.head(self.trunk(x))

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy on the action and on the effective movement (batch['movement'] when given)."""
        logits = self.logits(batch["frames"])
        action_logits, move_logits = logits[:, : self.config.num_actions], logits[:, self.config.num_actions:]
        action = batch["action"].to(self.device)
        move = batch["movement"].to(self.device) if "movement" in batch else self.move_of[action]
        ce = F.cross_entropy(action_logits, action)
        move_ce = F.cross_entropy(move_logits, move)
        loss = ce + move_ce
        acc = (action_logits.argmax(-1) == action).float().mean()
        move_acc = (move_logits.argmax(-1) == move).float().mean()
        return loss, {"loss": loss.detach(), "ce": ce.detach(), "move_ce": move_ce.detach(),
                      "accuracy": acc, "movement_accuracy": move_acc}

    @torch.no_grad()
    def predict(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Windows uint8 [B,k+2,H,W,3] (or a clip [T+1,H,W,3]) -> action, confidence, movement, probs (at the
        config's temperature) and the untempered action logits."""
        if frames.dim() == 4:
            frames = clip_windows(frames, self.config.context, self.config.future)
        logits = self.logits(frames)
        action_logits = logits[:, : self.config.num_actions]
        probs = (action_logits / self.config.temperature).softmax(-1)
        conf, action = probs.max(-1)
        movement = logits[:, self.config.num_actions:].argmax(-1)
        return {"action": action, "confidence": conf, "movement": movement, "probs": probs, "logits": action_logits}


@torch.no_grad()
def predict_transitions(idm: InverseDynamicsModel, data: TransitionData, batch: int = 256) -> dict[str, torch.Tensor]:
    """`predict` over every transition of `data` in batches (eval mode; the model's mode is restored), each output
    concatenated on the CPU (logits as float32)."""
    was_training = idm.training
    idm.eval()
    rows = np.arange(len(data))
    parts = [idm.predict(data.windows(rows[i:i + batch], idm.config.context, idm.config.future))
             for i in range(0, len(rows), batch)]
    idm.train(was_training)
    out = {k: torch.cat([part[k].cpu() for part in parts]) for k in parts[0]}
    out["logits"] = out["logits"].float()
    return out
