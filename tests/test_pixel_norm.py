"""The policy's pixel scaling and actor init options: 'unit' is the former x/255 - 0.5, 'background' keeps only
what differs from a frame's flat background, amplified; the options leave every other weight of a seeded agent as
it was (Arena's defaults do not move)."""

from __future__ import annotations

import pytest
import torch

from metabonk.common.errors import MetabonkError
from metabonk.policy.agent import Agent
from metabonk.policy.config import PolicyConfig
from metabonk.policy.encoder import normalise_pixels


def _pong_like() -> torch.Tensor:
    """Two 64×64 frames: a brown field, a 2×2 white ball and a 6×1 green paddle (one frame without the ball)."""
    frames = torch.empty(2, 64, 64, 3, dtype=torch.uint8)
    frames[:] = torch.tensor([144, 72, 17], dtype=torch.uint8)
    frames[0, 10:12, 5:7] = torch.tensor([236, 236, 236], dtype=torch.uint8)
    frames[:, 20:26, 28] = torch.tensor([92, 186, 92], dtype=torch.uint8)
    return frames


def test_unit_is_the_linear_scale() -> None:
    frames = _pong_like()
    x = normalise_pixels(frames, "unit")
    assert x.shape == (2, 3, 64, 64)
    torch.testing.assert_close(x, frames.permute(0, 3, 1, 2).float() / 255.0 - 0.5)


def test_background_keeps_the_objects_at_full_contrast() -> None:
    x = normalise_pixels(_pong_like(), "background")
    assert x.shape == (2, 3, 64, 64)
    assert x[:, :, :8].abs().max() == 0  # the field is the background: 0 everywhere
    torch.testing.assert_close(x[0, :, 10, 5], torch.full((3,), 0.5))  # the ball, brighter in every channel
    torch.testing.assert_close(x[:, :, 22, 28], torch.tensor([[-0.5, 0.5, 0.5]] * 2))  # the paddle: less red
    assert x[1, :, 10, 5].abs().max() == 0  # no ball in the second frame
    # on the unit scale the ball differs from the field by at most 0.86 in any channel, and mostly by far less
    # once a 64×64 resize blends it into its neighbours; here it saturates


def test_options_are_checked_and_leave_the_other_weights_unchanged() -> None:
    with pytest.raises(MetabonkError, match="pixel_norm"):
        PolicyConfig(pixel_norm="zscore")
    cfg = PolicyConfig(move_actions=6, card_head=False)
    assert cfg.pixel_norm == "unit" and cfg.actor_init_gain == 0.01  # the defaults Arena runs with
    torch.manual_seed(0)
    base = Agent(cfg)
    torch.manual_seed(0)
    other = Agent(PolicyConfig(move_actions=6, card_head=False, pixel_norm="background", actor_init_gain=1.0))
    b, o = base.state_dict(), other.state_dict()
    assert b.keys() == o.keys()
    changed = [k for k in b if not torch.equal(b[k], o[k])]
    assert changed == ["actor.2.weight"]
    ratio = o["actor.2.weight"].norm() / b["actor.2.weight"].norm()
    assert ratio == pytest.approx(100.0, rel=1e-4)
    frames = _pong_like()
    h = base.initial_state(2)
    assert not torch.equal(base.step({"pixels": frames}, h)[0], other.step({"pixels": frames}, h)[0])
