"""Tensors -> numpy arrays in one device-to-host copy: how a batched env hands a step's outputs to the host.

A Gymnasium vector env returns numpy arrays, so a game stepped on a GPU must copy its outputs to the host
each step, and every separate `.cpu()` is a synchronising transfer. `to_host` packs all of a step's tensors
(any dtypes) into one byte buffer on the device, copies it once, and hands back numpy views of it. On the
CPU the tensors already live in host memory and are returned as zero-copy views.
"""

from __future__ import annotations

import numpy as np
import torch

_NUMPY_DTYPE = {
    torch.float32: np.float32,
    torch.float64: np.float64,
    torch.int64: np.int64,
    torch.int32: np.int32,
    torch.uint8: np.uint8,
    torch.bool: np.bool_,
}


def to_host(tensors: dict[str, torch.Tensor], pack: bool | None = None) -> dict[str, np.ndarray]:
    """numpy arrays of `tensors` (same keys, shapes and dtypes); `pack` forces (or skips) the one-buffer copy,
    which by default happens only when some tensor is off the CPU."""
    if pack is None:
        pack = any(t.device.type != "cpu" for t in tensors.values())
    if not pack or not tensors:
        return {k: t.detach().numpy() for k, t in tensors.items()}
    # widest items first, so every piece starts at an offset aligned for its dtype
    order = sorted(tensors, key=lambda k: -tensors[k].element_size())
    flat = [tensors[k].detach().contiguous().view(-1).view(torch.uint8) for k in order]
    host = torch.cat(flat).cpu().numpy()
    out: dict[str, np.ndarray] = {}
    start = 0
    for k, piece in zip(order, flat, strict=True):
        t = tensors[k]
        end = start + piece.numel()
        out[k] = host[start:end].view(_NUMPY_DTYPE[t.dtype]).reshape(tuple(t.shape))
        start = end
    return out
