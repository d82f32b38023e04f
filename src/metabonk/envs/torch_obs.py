"""Env observations as torch tensors: what a model reads from a vector env's numpy (or torch) obs and info."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

Obs = dict[str, torch.Tensor]


def obs_to_torch(obs: dict[str, Any], info: dict[str, Any] | None, device: torch.device | str) -> Obs:
    """Env observation dict (numpy or torch) -> torch tensors; Arena's card options come from `info`."""
    out: Obs = {
        "pixels": torch.as_tensor(
            np.asarray(obs["pixels"]) if not torch.is_tensor(obs["pixels"]) else obs["pixels"], device=device
        )
    }
    if "state" in obs:
        out["state"] = torch.as_tensor(obs["state"], device=device, dtype=torch.float32)
    if info is not None and "card_options" in info:
        out["card_options"] = torch.as_tensor(np.asarray(info["card_options"]), device=device).long()
    return out
