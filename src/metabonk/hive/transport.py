"""How policies cross the hive: safetensors bytes (Ray moves them as plain objects) and files on disk.

A policy is a (PolicyConfig dict, state dict) pair; no pickle of tensors anywhere.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, load_file, save, save_file

from metabonk.common.checkpoint import WEIGHTS, config_from_dict, read_config
from metabonk.common.errors import MetabonkError
from metabonk.policy.agent import KIND, Agent
from metabonk.policy.config import PolicyConfig

StateDict = dict[str, torch.Tensor]


def state_bytes(state: StateDict) -> bytes:
    """A state dict as safetensors bytes (aliased tensors are cloned: safetensors refuses shared storage)."""
    return save({k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()})


def state_from_bytes(data: bytes) -> StateDict:
    try:
        return load(data)
    except SafetensorError as e:
        raise MetabonkError(f"not a safetensors state dict: {e}") from e


def agent_from(config: dict[str, Any], data: bytes) -> Agent:
    """Rebuild a CPU Agent from its config dict and safetensors bytes."""
    agent = Agent(config_from_dict(PolicyConfig, config))
    agent.load_state_dict(state_from_bytes(data))
    return agent.eval()


def read_state(path: str | Path) -> StateDict:
    """Weights of a policy checkpoint directory (CKPT/model.safetensors) or of a bare .safetensors file."""
    p = Path(path)
    f = p / WEIGHTS if p.is_dir() else p
    if not f.is_file():
        raise MetabonkError(f"{path}: no such checkpoint (expected a directory with {WEIGHTS} or a .safetensors file)")
    try:
        return load_file(str(f))
    except SafetensorError as e:
        raise MetabonkError(f"{f} is not a safetensors file: {e}") from e


def write_state(path: str | Path, state: StateDict, like: str | Path, meta: dict[str, Any]) -> Path:
    """Write merged weights: a policy checkpoint directory when `like` (the base) is one, else one
    .safetensors file; both atomically (temp + rename)."""
    out = Path(path)
    if Path(like).is_dir():
        doc = read_config(like, kind=KIND)
        agent = Agent(config_from_dict(PolicyConfig, doc["config"]))
        agent.load_state_dict(state)
        return agent.save(out, meta={**doc.get("meta", {}), **meta})
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, tmp, metadata={k: str(v) for k, v in meta.items()})
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
