"""Device selection: 'auto' picks CUDA when present; an unavailable device is a clear user error."""

from __future__ import annotations

import torch

from metabonk.common.errors import MetabonkError


def resolve_device(name: str = "auto") -> torch.device:
    """Turn 'auto' | 'cpu' | 'cuda' | 'cuda:N' into a torch.device, checking it exists."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MetabonkError(f"device '{name}' requested but CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise MetabonkError(f"unknown device '{name}': {e}") from e


def device_label(device: torch.device) -> str:
    """Short label used in benchmark file names: 'cpu', 'h100', 'h200', ..."""
    if device.type != "cuda":
        return "cpu"
    name = torch.cuda.get_device_name(device).lower()
    for tag in ("h200", "h100", "a100", "l4", "a10", "t4", "4090", "3090"):
        if tag in name:
            return tag
    return name.replace(" ", "-")
