"""World model: EDM math, sampler schedule, DreamEnv API, checkpoint round trip, CLI, and a tiny model that
learns (beats copy-last-frame at step 1 and responds to actions in the right direction)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metabonk.common.errors import MetabonkError
from metabonk.world.blocks import AdaGroupNorm, GroupNorm, channelwise_group_norm, groups_for
from metabonk.world.config import UNetConfig, WorldConfig, tiny_config
from metabonk.world.dream_env import DreamEnv
from metabonk.world.sampler import karras_sigmas
from metabonk.world.world_model import WorldModel


def micro_config() -> WorldConfig:
    cfg = tiny_config(frame_size=16, num_actions=9, num_context=2)
    cfg.unet = UNetConfig(channels=(32, 32), depths=(1, 1), cond_channels=64, num_groups=8)
    return cfg


def test_edm_preconditioning_limits() -> None:
    m = WorldModel(micro_config())
    cs = m.denoiser.conditioners(torch.tensor([1e-4, 100.0]))
    assert cs.c_skip[0].item() == pytest.approx(1.0, abs=1e-6) and cs.c_out[0].item() < 1e-3
    assert cs.c_skip[1].item() < 1e-4 and cs.c_out[1].item() == pytest.approx(0.5, rel=1e-3)
    sd = m.config.edm.sigma_data
    s = torch.tensor([0.7])
    c = m.denoiser.conditioners(s)
    # unit-variance input to F and unit-variance target: c_in² (σ²+σ_d²) = 1
    assert (c.c_in**2 * (s**2 + sd**2)).item() == pytest.approx(1.0)


def test_karras_schedule() -> None:
    s = karras_sigmas(3, 2e-3, 5.0, 7.0)
    assert (
        s.shape == (4,) and s[0].item() == pytest.approx(5.0) and s[2].item() == pytest.approx(2e-3, rel=1e-4)
    )
    assert s[3].item() == 0 and bool((s[:-1] > s[1:]).all())


def test_dream_env_api_and_errors() -> None:
    cfg = micro_config()
    env = DreamEnv(WorldModel(cfg), seed=0, max_episode_steps=2)
    frames = np.random.default_rng(0).integers(0, 255, (3, 2, 16, 16, 3), dtype=np.uint8)
    px, _ = env.reset(frames, np.zeros((3, 2), np.int64))
    assert px.shape == (3, 16, 16, 3) and px.dtype == torch.uint8
    px, r, term, trunc, _ = env.step(np.array([0, 1, 8]))
    assert px.shape == (3, 16, 16, 3) and r.shape == (3,) and term.dtype == torch.bool
    _, _, term, trunc, _ = env.step(torch.tensor([0, 0, 0]))
    assert bool((trunc | term).all())  # max_episode_steps=2
    with pytest.raises(MetabonkError):
        env.step(np.array([0, 9, 0]))  # outside the 9 actions
    with pytest.raises(MetabonkError):
        env.reset(frames[:, :1], np.zeros((3, 1)))


def test_checkpoint_round_trip(tmp_path) -> None:
    m = WorldModel(micro_config())
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.01)
    m.save(tmp_path / "w")
    m2 = WorldModel.load(tmp_path / "w")
    assert m2.config == m.config
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(MetabonkError):
        WorldModel.load(tmp_path / "missing")


def _group_norm_inputs(dtype: torch.dtype) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    # nonzero, channel-varying means so the between-channel variance term matters
    x = torch.randn(3, 64, 8, 8, generator=g) * 3 + 2 + torch.randn(1, 64, 1, 1, generator=g)
    scale, shift = torch.randn(3, 64, generator=g), torch.randn(3, 64, generator=g)
    return x.to(dtype), groups_for(64, 32), scale, shift


def _group_norm_reference(x: torch.Tensor, groups: int, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    y = F.group_norm(x.float(), groups, eps=1e-5)
    return y * (1 + scale[:, :, None, None]) + shift[:, :, None, None]


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_channelwise_group_norm_matches_group_norm(memory_format: torch.memory_format) -> None:
    x, groups, scale, shift = _group_norm_inputs(torch.float32)
    x = x.contiguous(memory_format=memory_format)
    out = channelwise_group_norm(x, groups, scale, shift, eps=1e-5)
    assert out.dtype == torch.float32 and out.shape == x.shape
    torch.testing.assert_close(out, _group_norm_reference(x, groups, scale, shift), rtol=1e-5, atol=1e-5)


def test_channelwise_group_norm_bf16() -> None:
    x, groups, scale, shift = _group_norm_inputs(torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last)
    out = channelwise_group_norm(x, groups, scale, shift, eps=1e-5)
    assert out.dtype == torch.bfloat16
    ref = _group_norm_reference(x, groups, scale, shift)  # fp32 maths on the same bf16 input
    torch.testing.assert_close(out.float(), ref, rtol=1.6e-2, atol=2e-2)


def test_ada_group_norm_paths_agree() -> None:
    norm = AdaGroupNorm(64, 16, 32)
    x, _, _, _ = _group_norm_inputs(torch.float32)
    cond = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        norm.channelwise = False
        ref = norm(x, cond)
        norm.channelwise = True
        out = norm(x.contiguous(memory_format=torch.channels_last), cond)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_unet_group_norm_paths_agree() -> None:
    norm = GroupNorm(32, 64)
    with torch.no_grad():  # non-trivial affine parameters
        norm.weight.normal_(1.0, 0.5, generator=torch.Generator().manual_seed(2))
        norm.bias.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(3))
    x, _, _, _ = _group_norm_inputs(torch.float32)
    with torch.no_grad():
        plain = torch.nn.GroupNorm(32, 64)
        plain.load_state_dict(norm.state_dict())
        ref = plain(x)
        norm.channelwise = True
        out = norm(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
