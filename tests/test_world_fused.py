"""The fused Triton world-model kernels agree with PyTorch, run on CPU through Triton's interpreter.

The interpreter executes the same kernel source the GPU compiles (only the bf16 MMA operands are widened to fp32,
since the interpreter mis-multiplies bf16); speed is measured on a GPU by `metabonk bench world`.
"""

from __future__ import annotations

import importlib
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("triton")

from metabonk.common.errors import MetabonkError
from metabonk.world.config import UNetConfig, WorldConfig
from metabonk.world.world_model import WorldModel


@pytest.fixture(scope="module")
def fused():
    """metabonk.world.fused_unet, its kernels run by Triton's interpreter (TRITON_INTERPRET=1, set in conftest)."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("TRITON_INTERPRET=1 was not set before triton was imported")
    return importlib.import_module("metabonk.world.fused_unet")


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).contiguous().to(torch.bfloat16)


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.float().permute(0, 3, 1, 2)


def _bare(fused_mod):
    """A FusedInner shell for calling its conv launcher on its own."""
    f = fused_mod.FusedInner.__new__(fused_mod.FusedInner)
    nn.Module.__init__(f)
    f.best, f._tuning, f.precision, f.traffic_bytes = {}, False, "bf16", 0
    f.tuned_ms, f.calls = {}, __import__("collections").Counter()
    return f


@pytest.mark.parametrize("case", ["plain", "stride2", "upsample", "residual", "skip"])
def test_conv_kernel_matches_conv2d_and_its_statistics(fused, case: str) -> None:
    torch.manual_seed(0)
    B, C, H = 2, 32, 8
    conv = nn.Conv2d(C, 32, 3, padding=1, stride=2 if case == "stride2" else 1)
    skip = nn.Conv2d(2 * C, 32, 1) if case == "skip" else None
    spec = fused.pack_conv(conv, upsample=case == "upsample", skip=skip)
    x = torch.randn(B, C, H, H).bfloat16().float()
    inp = F.interpolate(x, scale_factor=2.0, mode="nearest") if case == "upsample" else x
    ref = F.conv2d(inp, conv.weight.bfloat16().float(), conv.bias, stride=conv.stride, padding=1)
    kw: dict[str, object] = {}
    if case == "residual":
        r = torch.randn_like(ref).bfloat16().float()
        kw["residual"], ref = _nhwc(r), ref + r
    if case == "skip":
        s1, s2 = torch.randn(B, C, H, H).bfloat16().float(), torch.randn(B, C, H, H).bfloat16().float()
        kw["skips"] = [_nhwc(s1), _nhwc(s2)]
        ref = ref + F.conv2d(torch.cat([s1, s2], 1), skip.weight.bfloat16().float(), skip.bias)
    stats = torch.zeros(B, 2, 32)
    with torch.no_grad():
        out = _nchw(_bare(fused).conv(spec, _nhwc(x), stats, **kw))
    assert out.shape == ref.shape
    ref = ref.detach()
    assert (out - ref).abs().max() < 0.02 * ref.abs().max() + 0.02  # bf16 output rounding
    want = torch.stack([ref.sum((2, 3)), ref.pow(2).sum((2, 3))], 1)
    torch.testing.assert_close(stats, want, rtol=1e-3, atol=1e-2)


def test_every_launch_configuration_gives_the_same_result(fused) -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(32, 32, 3, padding=1)
    spec = fused.pack_conv(conv)
    x = _nhwc(torch.randn(2, 32, 16, 16))
    f = _bare(fused)
    outs = []
    for cfg in fused.CONV_CONFIGS:
        f.best = {}
        f._config = lambda key, hw, run, stats, cfg=cfg: cfg  # force this configuration
        stats = torch.zeros(2, 2, 32)
        outs.append((f.conv(spec, x, stats).float(), stats))
    for out, st in outs[1:]:
        torch.testing.assert_close(out, outs[0][0], rtol=0, atol=1e-2)
        torch.testing.assert_close(st, outs[0][1], rtol=1e-4, atol=1e-3)


def _model(channels: tuple[int, ...] = (32, 32, 32), groups: int = 8) -> WorldModel:
    cfg = WorldConfig(frame_size=16, num_context=2, num_actions=5,
                      unet=UNetConfig(channels=channels, depths=(1,) * len(channels), cond_channels=32,
                                      num_groups=groups))
    torch.manual_seed(0)
    m = WorldModel(cfg).eval()
    with torch.no_grad():  # away from the zero-initialised output layers, so every layer matters
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


def _inputs(B: int = 3) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(2)
    return (torch.randn(B, 3, 16, 16, generator=g), torch.randn(B, generator=g),
            torch.rand(B, 2, 3, 16, 16, generator=g) * 2 - 1, torch.randint(0, 5, (B, 2), generator=g),
            torch.rand(B, generator=g) * 0.1)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt())


def test_fused_unet_matches_the_eager_network_in_bf16_and_fp8(fused) -> None:
    m = _model()
    inner = m.denoiser.inner
    args = _inputs()
    with torch.no_grad():
        ref = inner(*args)
        out_bf16 = fused.FusedInner(inner, "bf16")(*args)
        out_fp8 = fused.FusedInner(inner, "fp8")(*args)
    e_bf16, e_fp8 = _rel_err(out_bf16, ref), _rel_err(out_fp8, ref)
    assert out_bf16.shape == ref.shape == out_fp8.shape
    # bf16 activations: ~1 % here; e4m3 (3 mantissa bits) through 9 random-weight layers: ~20 %
    assert e_bf16 < 0.03, e_bf16
    assert e_fp8 < 0.35, e_fp8
    # a broken layer (here: the output conv's weights zeroed in the packed copy) is caught by the same measure
    f = fused.FusedInner(inner, "bf16")
    f.specs[id(inner.unet.conv_out)].w.zero_()
    with torch.no_grad():
        assert _rel_err(f(*args), ref) > 0.5


def test_fused_sampler_dreams_like_the_eager_one_and_keeps_the_state_dict(fused) -> None:
    m = _model()
    keys = list(m.state_dict())
    ctx, acts = torch.rand(2, 2, 3, 16, 16) * 2 - 1, torch.randint(0, 5, (2, 2))
    noise = torch.randn(2, 3, 16, 16)
    ref = m.sampler.sample(ctx, acts, 3, noise_BCHW=noise)
    original = m.denoiser.inner
    fused.fuse_denoiser(m, "bf16")
    assert isinstance(m.denoiser.inner, fused.FusedInner) and m.denoiser.inner is not original
    assert list(m.state_dict()) == keys  # saving a fused model writes the same checkpoint
    out = m.sampler.sample(ctx, acts, 3, noise_BCHW=noise)
    assert _rel_err(out, ref) < 0.03
    fused.fuse_denoiser(m, "fp8")  # re-fusing rebuilds from the kept modules
    assert m.denoiser.inner.precision == "fp8"


def test_unsupported_shapes_and_precisions_are_clear_errors(fused) -> None:
    inner = _model().denoiser.inner
    with pytest.raises(MetabonkError, match="precision"):
        fused.FusedInner(inner, "int4")
    with pytest.raises(MetabonkError, match="multiple of 32"):  # FP8 MMAs need K >= 32
        fused.FusedInner(_model((16, 16), 4).denoiser.inner, "fp8")(*_inputs())
    with pytest.raises(MetabonkError, match="power-of-two"):
        fused.FusedInner(_model((24, 24), 4).denoiser.inner, "bf16")
    args = list(_inputs())
    args[0] = torch.randn(3, 3, 12, 12)
    args[2] = torch.rand(3, 2, 3, 12, 12)
    with pytest.raises(MetabonkError, match="power-of-two frame"):
        fused.FusedInner(inner, "bf16")(*args)
