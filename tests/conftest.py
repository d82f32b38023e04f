"""Test-wide settings: one intra-op thread keeps small-model steps fast and timings stable on 2 shared cores.

Two knobs let the suite be re-run under other conditions (`make test-matrix`, benchmarks/test_matrix.py, uses them):
- METABONK_TEST_THREADS: torch intra-op threads (default 1);
- METABONK_TEST_SEED: an offset added to every seed the tests (and the code under test) pass to
  `torch.manual_seed`, `random.seed`, `np.random.seed` and `np.random.default_rng` (default 0: seeds unchanged).
"""

import os
import random

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Triton kernels (the fused world model) run on CPU through Triton's interpreter; it must be chosen before triton is
# first imported.
os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np
import torch

torch.set_num_threads(int(os.environ.get("METABONK_TEST_THREADS", "1")))

SEED_OFFSET = int(os.environ.get("METABONK_TEST_SEED", "0"))


def _shift_seeds(offset: int) -> None:
    """Wrap the seeding entry points so every explicit integer seed becomes seed + offset (None stays None)."""

    def shifted(fn):  # type: ignore[no-untyped-def]
        def call(seed=None, *args, **kwargs):  # type: ignore[no-untyped-def]
            if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
                seed = int(seed) + offset
            return fn(seed, *args, **kwargs)

        call.__wrapped__ = fn  # type: ignore[attr-defined]
        return call

    torch.manual_seed = shifted(torch.manual_seed)
    random.seed = shifted(random.seed)
    np.random.seed = shifted(np.random.seed)
    np.random.default_rng = shifted(np.random.default_rng)


if SEED_OFFSET:
    _shift_seeds(SEED_OFFSET)
