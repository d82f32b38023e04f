"""Data-parallel training under `torchrun`: process-group set-up from torchrun's environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/PORT), gloo on CPU and NCCL on CUDA (NVLink multicast off), a timeout on every
collective so a dead rank ends the others with one clear error instead of a hang, and the per-rank slice of a
global batch. `fit` uses these; a process started without torchrun (WORLD_SIZE unset or 1) never touches them.

The wrapping itself is PyTorch's DistributedDataParallel; only the batch split and the error translation are
written here, because DDP leaves both to the caller.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
from torch import distributed as dist
from torch import nn

from metabonk.common.device import resolve_device
from metabonk.common.errors import MetabonkError

TIMEOUT_ENV = "METABONK_DDP_TIMEOUT_S"
"""Seconds a collective (all-reduce, barrier) may wait for the other ranks before the run fails (default 120)."""


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints, TensorBoard and the progress bar."""
        return self.rank == 0


_INFO: DistInfo | None = None
_FAILED = False
"""Set once a collective failed: the group is then left to the process exit (destroying it could block)."""


def launched() -> bool:
    """True when torchrun (or an equivalent launcher) started this process as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str = "auto") -> DistInfo | None:
    """Join the process group torchrun describes (once; later calls return the same info), or None when this
    process runs alone. CUDA ranks use `cuda:LOCAL_RANK` and NCCL; CPU ranks use gloo."""
    global _INFO
    if _INFO is not None:
        return _INFO
    if not launched():
        return None
    try:
        rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    except (KeyError, ValueError) as e:
        raise MetabonkError(f"WORLD_SIZE > 1 but RANK/LOCAL_RANK are missing or bad ({e}): launch with "
                            "torchrun --nproc-per-node N -m metabonk ...") from e
    dev = resolve_device(device)
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise MetabonkError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA devices")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # NVLink multicast off (the device notes ask it)
    timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "120")))
    if not dist.is_initialized():
        try:
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world,
                                    timeout=timeout)
        except (RuntimeError, ValueError) as e:
            raise MetabonkError(f"rank {rank}: could not join the {world}-process group: "
                                f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    _INFO = DistInfo(rank, world, local, dev)
    atexit.register(teardown)  # leave the group cleanly at exit (NCCL warns about a group never destroyed)
    return _INFO


def teardown() -> None:
    """Leave the process group (idempotent)."""
    global _INFO
    if dist.is_initialized() and not _FAILED:
        dist.destroy_process_group()
    _INFO = None


def wrap(model: nn.Module, info: DistInfo, find_unused: bool = True) -> nn.Module:
    """`model` (already on `info.device`, weights loaded) wrapped in DistributedDataParallel: gradients are
    averaged across ranks in backward, and rank 0's weights are broadcast at construction. `find_unused` allows
    parameters without gradient in a step (the BC agent's card head, on most batches) at the cost of one walk of
    the autograd graph per step; a model that uses every parameter every step passes False."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def barrier(info: DistInfo | None) -> None:
    """Wait for every rank (no-op when alone)."""
    if info is not None:
        dist.barrier()


def mean_across(values: torch.Tensor, info: DistInfo | None) -> torch.Tensor:
    """The mean of `values` over ranks (one all-reduce; `values` itself when alone)."""
    if info is None:
        return values
    out = values.clone()
    dist.all_reduce(out)
    return out / info.world_size


def shard(batch: Any, info: DistInfo) -> Any:
    """This rank's contiguous slice (along dim 0) of a global batch: tensors and arrays, nested in dicts, lists
    and tuples, are cut in `world_size` equal parts; other values pass through."""
    if isinstance(batch, torch.Tensor | np.ndarray):
        n = batch.shape[0]
        if n % info.world_size:
            raise MetabonkError(f"the global batch ({n}) must divide by the number of ranks ({info.world_size})")
        part = n // info.world_size
        return batch[info.rank * part:(info.rank + 1) * part]
    if isinstance(batch, dict):
        return {k: shard(v, info) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(shard(v, info) for v in batch)
    return batch


def step_seed(seed: int, step: int, rank: int) -> int:
    """Torch seed of one rank at one step: each rank's in-forward noise (diffusion σ, dropout) is its own and
    depends only on (seed, step, rank), so a run resumed on the same number of ranks repeats itself."""
    return int(np.random.default_rng((seed, step, rank)).integers(2**63))


_PEER_MARKERS = ("gloo", "nccl", "connection reset", "connection closed", "timed out", "timeout", "broken pipe")


def is_peer_failure(err: BaseException) -> bool:
    """Whether `err` is the transport reporting a dead or stalled rank: a DistError, or the RuntimeError that
    DDP's reducer raises from backward with gloo's or NCCL's message (not a model's own shape or dtype error)."""
    if isinstance(err, dist.DistError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(m in text for m in _PEER_MARKERS)


def failure(info: DistInfo, step: int, err: BaseException) -> MetabonkError:
    """The one-line error a rank raises when a collective fails (another rank died or timed out)."""
    global _FAILED
    _FAILED = True
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return MetabonkError(f"rank {info.rank}/{info.world_size}: training stopped at step {step}: another rank died "
                         f"or timed out ({first[:200]}); the last checkpoint is intact")
