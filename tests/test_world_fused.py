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
from metabonk.world.fused_configs import NORM_CONFIGS, conv_candidates
from metabonk.world.fused_pack import subpixel_weights
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
    f.best, f.autotune, f.precision, f.traffic_bytes = {}, False, "bf16", 0
    f.tuned_all, f.calls = {}, __import__("collections").Counter()
    return f


def _subpixel_conv(x: torch.Tensor, k: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Nearest-2x upsampling + 3x3 conv computed as four 2x2 convs of x (k: [4, cout, cin, 2, 2])."""
    B, _, H, W = x.shape
    out = x.new_zeros(B, k.shape[1], 2 * H, 2 * W)
    xp = F.pad(x, (1, 1, 1, 1))
    for phase in range(4):
        py, px = divmod(phase, 2)
        out[:, :, py::2, px::2] = F.conv2d(xp[:, :, py : py + H + 1, px : px + W + 1], k[phase], bias)
    return out


def test_input_pack_puts_noisy_then_context_channels_then_zeros_in_nhwc(fused) -> None:
    from metabonk.world.fused_pack import pack_input

    noisy = torch.randn(3, 3, 16, 8)
    ctx = (torch.rand(3, 2, 3, 16, 8) * 2 - 1).to(torch.bfloat16)  # any float dtype, as DreamEnv's frames
    out = pack_input(noisy, ctx, 16)
    ref = torch.cat([noisy, ctx.float().flatten(1, 2), torch.zeros(3, 7, 16, 8)], 1).permute(0, 2, 3, 1)
    assert out.dtype == torch.bfloat16 and out.shape == (3, 16, 8, 16)
    # within one bf16 step (the interpreter's fp32 -> bf16 cast truncates where the GPU rounds)
    torch.testing.assert_close(out.float(), ref, rtol=2**-7, atol=0)
    with pytest.raises(MetabonkError, match="do not fit"):
        pack_input(noisy, torch.rand(3, 5, 3, 16, 8), 16)  # 18 channels
    ctx11 = torch.rand(3, 11, 3, 16, 8)  # 36 channels into 48 (not a power of two)
    out = pack_input(noisy, ctx11, 48)
    ref = torch.cat([noisy, ctx11.flatten(1, 2), torch.zeros(3, 12, 16, 8)], 1).permute(0, 2, 3, 1)
    assert out.shape == (3, 16, 8, 48)
    torch.testing.assert_close(out.float(), ref, rtol=2**-7, atol=0)


@pytest.mark.parametrize("fp8", [False, True])
def test_norm_pass_of_a_concatenation_with_the_blocks_1x1_skip(fused, fp8: bool, monkeypatch) -> None:
    torch.manual_seed(4)
    B, H, C, G = 2, 16, 32, 8
    x1, x2 = torch.randn(B, C, H, H).bfloat16().float() * 2 + 1, torch.randn(B, C, H, H).bfloat16().float()
    cat = torch.cat([x1, x2], 1)
    mods = torch.randn(B, 4 * C) * 0.3  # [scale(2C), shift(2C)]
    skip = nn.Conv2d(2 * C, 32, 1)
    f = _bare(fused)
    f.precision = "fp8" if fp8 else "bf16"
    parts = [(_nhwc(x), torch.stack([x.sum((2, 3)), x.pow(2).sum((2, 3))], 1)) for x in (x1, x2)]
    norm = fused.NormSpec(2 * C, G, 1e-5, 0)
    ws = fused.pack_conv(nn.Conv2d(C, 32, 3, padding=1), skip=skip).ws
    with torch.no_grad():
        ref = F.silu(F.group_norm(cat, G, eps=1e-5) * (1 + mods[:, : 2 * C, None, None]) + mods[:, 2 * C :, None, None])
        ref_skip = F.conv2d(cat, skip.weight.bfloat16().float())  # (its bias goes to the block's second conv)
    rel = 0.0625 if fp8 else 0.01  # elementwise, half a unit in the last place: e4m3 keeps 3 mantissa bits
    for cfg in NORM_CONFIGS:  # every launch configuration the tuner may pick
        monkeypatch.setattr(fused, "norm_candidates", lambda hw, cfg=cfg: (cfg,))
        with torch.no_grad():
            act, sk = f.norm_act(parts, norm, mods, skip_w=ws)
        assert bool(((_nchw(act) - ref).abs() <= rel * ref.abs() + 0.02).all()), cfg
        assert (_nchw(sk) - ref_skip).abs().max() < 0.01 * ref_skip.abs().max(), cfg


def test_subpixel_weights_equal_upsample_then_conv(fused) -> None:
    torch.manual_seed(3)
    w, b, x = torch.randn(8, 4, 3, 3), torch.randn(8), torch.randn(2, 4, 5, 7)
    ref = F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), w, b, padding=1)
    torch.testing.assert_close(_subpixel_conv(x, subpixel_weights(w), b), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["plain", "stride2", "upsample", "residual"])
def test_conv_kernel_matches_conv2d_and_its_statistics(fused, case: str) -> None:
    torch.manual_seed(0)
    B, C, H = 2, 32, 8
    conv = nn.Conv2d(C, 32, 3, padding=1, stride=2 if case == "stride2" else 1)
    spec = fused.pack_conv(conv, upsample=case == "upsample")
    x = torch.randn(B, C, H, H).bfloat16().float()
    if case == "upsample":  # the kernel's sub-pixel form, weights rounded as the kernel has them
        ref = _subpixel_conv(x, subpixel_weights(conv.weight.detach()).bfloat16().float(), conv.bias)
    else:
        ref = F.conv2d(x, conv.weight.bfloat16().float(), conv.bias, stride=conv.stride, padding=1)
    kw: dict[str, object] = {}
    if case == "residual":
        r = torch.randn_like(ref).bfloat16().float()
        kw["residual"], ref = _nhwc(r), ref + r
    stats = torch.zeros(B, 2, 32)
    with torch.no_grad():
        out = _nchw(_bare(fused).conv(spec, _nhwc(x), stats, **kw))
    assert out.shape == ref.shape
    ref = ref.detach()
    assert (out - ref).abs().max() < 0.02 * ref.abs().max() + 0.02  # bf16 output rounding
    want = torch.stack([ref.sum((2, 3)), ref.pow(2).sum((2, 3))], 1)
    torch.testing.assert_close(stats, want, rtol=1e-3, atol=1e-2)


@pytest.mark.parametrize(("cin", "fp8"), [(16, False), (32, False), (128, False), (64, True), (128, True)])
def test_every_launch_configuration_gives_the_same_result(fused, cin: int, fp8: bool) -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(cin, 64, 3, padding=1)
    spec = fused.pack_conv(conv, fp8=fp8)
    x = torch.randn(3, 16, 16, cin).to(torch.float8_e4m3fn if fp8 else torch.bfloat16)
    w = spec.w.float() * (spec.wscale[:, None] if fp8 else 1)  # the packed weights, dequantised
    w = w[:64].view(64, 3, 3, cin).permute(0, 3, 1, 2)
    ref = F.conv2d(_nchw(x), w, conv.bias, padding=1).detach()
    kw: dict[str, torch.Tensor] = {}
    if cin != 128:  # a residual too (loaded by pointers or by the TMA unit)
        r = torch.randn_like(ref).bfloat16().float()
        kw["residual"], ref = _nhwc(r), ref + r
    f = _bare(fused)
    cands = conv_candidates(256, cin, 64, tma_width=16, itemsize=x.element_size())
    assert any(c["SWAP"] for c in cands) and any(c["BM"] == 256 for c in cands)
    assert any(c.get("TMA") and c["SWAP"] for c in cands) and any(c.get("TMA") and not c["SWAP"] for c in cands)
    assert any(c.get("EPI") for c in cands) and any(c.get("PERSIST") for c in cands)
    assert any(c.get("BK") == 128 for c in cands) == (cin == 128)
    assert any(c.get("BK") == 128 and c.get("TMA") for c in cands) == (cin == 128 and fp8)
    assert any(c["NUM_STAGES"] == 6 for c in cands) == (cin == 16)  # the input conv's deeper pipeline
    for cfg in cands:  # tile sizes, transposed MMA, pipeline depth, BK 128, TMA loads (zero-filled padding), persistent
        f._config = lambda key, hw, cands, run, stats, cfg=cfg: cfg  # force this configuration
        stats = torch.zeros(3, 2, 64)
        out = _nchw(f.conv(spec, x, stats, **kw))
        assert (out - ref).abs().max() < 0.02 * ref.abs().max() + 0.02, cfg
        torch.testing.assert_close(stats[:, 0], ref.sum((2, 3)), rtol=1e-3, atol=1e-2, msg=str(cfg))
    assert conv_candidates_without_tma(fused, cin) == [c for c in cands if not c.get("TMA")]


def test_output_conv_with_few_channels_in_every_launch_configuration(fused) -> None:
    torch.manual_seed(2)
    conv = nn.Conv2d(32, 3, 3, padding=1)  # 3 outputs, padded to a 16-wide MMA tile
    spec = fused.pack_conv(conv)
    x = torch.randn(2, 32, 16, 16).bfloat16().float()
    ref = F.conv2d(x, conv.weight.bfloat16().float(), conv.bias, padding=1).detach()
    f = _bare(fused)
    cands = conv_candidates(256, 32, spec.n_pad, tma_width=16)
    assert spec.n_pad == 16 and any(c["BM"] == 256 and not c["SWAP"] for c in cands)
    for cfg in cands:
        f._config = lambda key, hw, cands, run, stats, cfg=cfg: cfg
        out = _nchw(f.conv(spec, _nhwc(x), None, out_dtype=torch.float32))
        assert out.shape == ref.shape and (out - ref).abs().max() < 0.01 * ref.abs().max() + 0.01, cfg


def test_subpixel_conv_in_every_launch_configuration(fused) -> None:
    torch.manual_seed(3)
    conv = nn.Conv2d(32, 64, 3, padding=1)
    spec = fused.pack_conv(conv, upsample=True)
    x = torch.randn(3, 32, 16, 16).bfloat16().float()
    ref = _subpixel_conv(x, subpixel_weights(conv.weight.detach()).bfloat16().float(), conv.bias).detach()
    f = _bare(fused)
    cands = conv_candidates(256, 32, 64, tma_width=16, epi=False)
    assert any(c.get("TMA") for c in cands) and any(c.get("PERSIST") for c in cands)
    assert not any(c.get("EPI") for c in cands)  # sub-pixel outputs are not consecutive pixels
    for cfg in cands:
        f._config = lambda key, hw, cands, run, stats, cfg=cfg: cfg
        stats = torch.zeros(3, 2, 64)
        out = _nchw(f.conv(spec, _nhwc(x), stats))
        assert (out - ref).abs().max() < 0.02 * ref.abs().max() + 0.02, cfg
        torch.testing.assert_close(stats[:, 1], ref.pow(2).sum((2, 3)), rtol=1e-3, atol=1e-1, msg=str(cfg))


def test_tuning_keeps_the_fastest_launch_that_compiles(fused, monkeypatch) -> None:
    """tuning() times every candidate once per layer shape (GPU: triton.testing.do_bench; here a fake clock),
    skips one that fails to compile, keeps the fastest for later calls, and the result stays correct."""
    import triton.testing

    torch.manual_seed(4)
    conv = nn.Conv2d(32, 64, 3, padding=1)
    spec = fused.pack_conv(conv)
    x = _nhwc(torch.randn(2, 32, 16, 16))
    ref = F.conv2d(_nchw(x), conv.weight.bfloat16().float(), conv.bias, padding=1).detach()
    cands = conv_candidates(256, 32, 64, tma_width=16)
    fastest, broken = cands[-1], cands[1]
    timed: list[dict[str, int]] = []

    def fake_do_bench(fn, warmup: int, rep: int) -> float:
        cfg = fn.__defaults__[0]  # the candidate the tuner's lambda binds
        if cfg is broken:
            raise RuntimeError("out of shared memory")
        timed.append(cfg)
        return 1.0 if cfg is fastest else 2.0 + len(timed)

    monkeypatch.setattr(triton.testing, "do_bench", fake_do_bench)
    f = _bare(fused)
    with f.tuning():
        out = _nchw(f.conv(spec, x, torch.zeros(2, 2, 64)))
    assert len(timed) == len(cands) - 1 and broken not in timed
    (key,) = f.best
    assert f.best[key] is fastest and f.tuned_ms[key] == 1.0 and len(f.tuned_all[key]) == len(cands) - 1
    assert (out - ref).abs().max() < 0.02 * ref.abs().max() + 0.02
    f.conv(spec, x, torch.zeros(2, 2, 64))  # the same shape again: no new timing
    assert len(timed) == len(cands) - 1


def conv_candidates_without_tma(fused, cin: int) -> list[dict[str, int]]:
    """Strided and upsampling convs (tma_width 0) and maps wider than a TMA box get the pointer kernel only."""
    plain = conv_candidates(256, cin, 64)
    assert plain == conv_candidates(256, cin, 64, tma_width=512)
    return plain


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


def test_dream_env_with_fused_kernels_dreams_like_eager(fused) -> None:
    from metabonk.world.dream_env import DreamEnv

    frames = torch.randint(0, 256, (2, 2, 16, 16, 3), dtype=torch.uint8)
    acts = torch.randint(0, 5, (2, 2))
    dreams = []
    for kernels in ("eager", "fused_bf16"):
        env = DreamEnv(_model(), seed=0, bf16=False, kernels=kernels)
        env.reset(frames, acts)
        dreams.append(torch.stack([env.step(torch.tensor([1, 3]))[0] for _ in range(2)]).float())
    assert isinstance(env.model.denoiser.inner, fused.FusedInner)
    assert (dreams[0] - dreams[1]).abs().mean() < 2.0  # uint8 pixels: ~rounding of bf16 activations
    with pytest.raises(MetabonkError, match="kernels"):
        DreamEnv(_model(), kernels="fused_int4")


def test_dream_cli_rejects_unknown_kernels_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    import sys

    from metabonk.cli import main

    monkeypatch.setattr(sys, "argv", ["metabonk", "dream", str(tmp_path / "none"), "--data", str(tmp_path),
                                      "--out", str(tmp_path / "d.gif"), "--kernels", "cudnn"])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert "--kernels must be one of eager, fused_bf16, fused_fp8" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
