"""`bench world` compares its variants from the same starting noise (a fixed draw per batch, whatever the
global RNG did), so its agreement figure measures arithmetic, not two different samples."""

from __future__ import annotations

import torch

from metabonk.bench.world import _noise


def test_every_variant_starts_from_the_same_noise() -> None:
    ctx32 = torch.zeros(3, 4, 3, 8, 8)
    torch.manual_seed(0)
    a = _noise(ctx32)
    torch.randn(100)  # the global RNG moves on (as building and timing another variant does)
    torch.manual_seed(123)
    b = _noise(ctx32)
    assert a.shape == (3, 3, 8, 8) and a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert 0.8 < float(a.std()) < 1.2  # a unit Gaussian, not zeros
    half = _noise(ctx32.to(torch.bfloat16))  # a bf16 variant gets the same draw, rounded
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), a, rtol=1e-2, atol=1e-2)
