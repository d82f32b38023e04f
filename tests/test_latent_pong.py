"""Pong support of the latent area: the change-weighted LAM loss and `metabonk record --sticky` for ALE."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from metabonk.cli import app
from metabonk.common.checkpoint import read_config
from metabonk.data.store import EpisodeStore
from metabonk.latent.frames import PONG_PADDLE_RAM
from metabonk.latent.lam import LAMConfig, LatentActionModel, change_weights, object_motion, weighted_mse
from metabonk.latent.vq import VQConfig


def _moving_square(size: int = 16) -> torch.Tensor:
    """Window [1, 3, 3, size, size] in [-1, 1]: a 2x2 square moves 2 px right per frame on a flat background."""
    x = -torch.ones(1, 3, 3, size, size)
    for t, col in enumerate((4, 6, 8)):
        x[0, t, :, 6:8, col:col + 2] = 1.0
    return x


def test_change_weights_mark_only_moving_pixels_dilated() -> None:
    w = change_weights(_moving_square(), weight=9.0, threshold=0.04)
    assert w.shape == (1, 1, 16, 16)
    assert set(torch.unique(w).tolist()) == {1.0, 10.0}
    heavy = w[0, 0] > 1
    # the square covered rows 6-7, columns 4-9; one pixel of dilation gives rows 5-8, columns 3-10
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[5:9, 3:11] = True
    assert torch.equal(heavy, expected)
    assert torch.equal(change_weights(_moving_square(), 0.0, 0.04), torch.ones(1, 1, 16, 16))


def test_weighted_mse_emphasises_changed_pixels() -> None:
    x = _moving_square()
    target = x[:, -1]
    w = change_weights(x, weight=20.0, threshold=0.04)
    uniform = torch.ones_like(w)
    wrong_static, wrong_moving = target.clone(), target.clone()
    wrong_static[..., 0, 0] += 0.5   # same error on a pixel that never changes
    wrong_moving[..., 6, 8] += 0.5   # ... and on one the square moved through
    assert torch.isclose(weighted_mse(wrong_static, target, uniform), F.mse_loss(wrong_static, target))
    assert torch.isclose(weighted_mse(wrong_static, target, uniform), weighted_mse(wrong_moving, target, uniform))
    assert weighted_mse(wrong_moving, target, w) > 10 * weighted_mse(wrong_static, target, w)


def test_lam_loss_uses_change_weight_and_config_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    frames = ((_moving_square() + 1) * 127.5).round().to(torch.uint8).permute(0, 1, 3, 4, 2).repeat(4, 1, 1, 1, 1)
    cfg = LAMConfig(width=8, frame_size=16, change_weight=20.0, vq=VQConfig(num_codes=4, code_dim=8))
    model = LatentActionModel(cfg)
    loss, metrics = model({"frames": frames})
    m = {k: float(v) for k, v in metrics.items()}  # metrics are 0-dim tensors (no host sync in forward)
    assert m["recon"] != pytest.approx(m["mse"], rel=1e-3)  # the weighted term, not plain MSE, is trained
    assert loss.item() == pytest.approx(m["recon"] + m["commit"], rel=1e-5)
    plain = LatentActionModel(LAMConfig(width=8, frame_size=16, vq=VQConfig(num_codes=4, code_dim=8)))
    _, mp = plain({"frames": frames})
    assert float(mp["recon"]) == pytest.approx(float(mp["mse"]))
    model.save(tmp_path / "lam")
    assert read_config(tmp_path / "lam", kind="lam")["config"]["change_weight"] == 20.0
    assert LatentActionModel.load(tmp_path / "lam").config.change_weight == 20.0


def _paddle_positions(store_dir: Path) -> np.ndarray:
    ep = EpisodeStore.open(store_dir).episode(0, keys=["state"])
    return np.round(np.asarray(ep["state"])[:, PONG_PADDLE_RAM] * 255)


def test_record_sticky_reaches_the_emulator(tmp_path: Path) -> None:
    runner = CliRunner()
    for sticky in ("0", "1"):
        r = runner.invoke(app, ["record", "ale:Pong", "--episodes", "1", "--max-steps", "60", "--size", "16",
                                "--sticky", sticky, "--out", str(tmp_path / sticky)])
        assert r.exit_code == 0, r.output
    assert EpisodeStore.open(tmp_path / "0").info["meta"]["sticky_actions"] == 0.0
    # sticky 1 repeats the first (NOOP) action forever, so the paddle never moves; sticky 0 obeys the actions
    assert len(np.unique(_paddle_positions(tmp_path / "1"))) == 1
    assert len(np.unique(_paddle_positions(tmp_path / "0"))) > 10


def test_record_sticky_rejected_for_non_ale_env(tmp_path: Path) -> None:
    out = tmp_path / "arena"
    r = subprocess.run([sys.executable, "-m", "metabonk", "record", "arena", "--sticky", "0", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "--sticky applies to ALE games only" in lines[0], r.stderr
    assert not out.exists()


def _reach(blocks: int) -> int:
    """Farthest input pixel (in rows, same column) of x_t that influences the centre pixel of the prediction."""
    torch.manual_seed(0)
    cfg = LAMConfig(width=8, frame_size=64, decoder_blocks=blocks, vq=VQConfig(num_codes=4, code_dim=8))
    dec = LatentActionModel(cfg).decoder
    ctx = torch.zeros(1, 2, 3, 64, 64, requires_grad=True)
    dec(ctx, torch.randn(1, 8))[0, :, 32, 32].sum().backward()
    grad = ctx.grad[0, -1].abs().sum(0)[:, 32]  # type: ignore[union-attr]
    return int((grad > 0).nonzero().squeeze(1).sub(32).abs().max())


def test_decoder_blocks_widen_the_receptive_field() -> None:
    assert _reach(0) <= 8  # too short for where the paddle was in x_{t-1} and goes in x_{t+1}: up to 12 px apart
    assert _reach(3) >= 24
    keys = set(LatentActionModel(LAMConfig()).state_dict())
    assert not any(k.startswith("decoder.dilated") for k in keys)  # default: same weights as before


def _bar(row: int) -> torch.Tensor:
    """One 64x64 frame [1, 3, 64, 64] in [-1, 1]: a 2x6 bar (Pong's paddle at this size) at the given row."""
    x = -torch.ones(1, 3, 64, 64)
    x[..., row:row + 6, 44:46] = 0.6
    return x


def test_object_motion_reports_the_direction_of_a_moving_bar() -> None:
    down = object_motion(_bar(20), _bar(24), s=6)
    up = object_motion(_bar(24), _bar(20), s=6)
    assert down.shape == (1, 3, 8, 8)
    cells = down[0, 2] > 0  # changed fraction: only the bar's column of cells (column 44 -> cell 5)
    assert cells.any() and not cells[:, :5].any() and not cells[:, 6:].any()
    dy_down = (down[0, 0] * down[0, 2]).sum() / down[0, 2].sum()
    dy_up = (up[0, 0] * up[0, 2]).sum() / up[0, 2].sum()
    assert dy_down > 0.2 and dy_up < -0.2  # units of s: ~+0.5 for 4 px down (vacated pixels dilute 4/6)
    assert (down[0, 1] * down[0, 2]).abs().sum() / down[0, 2].sum() < 0.1  # no horizontal motion
    assert object_motion(_bar(20), _bar(20), s=6).abs().sum() == 0  # nothing changed, nothing reported


def test_stripe_pooling_reports_a_bar_alike_wherever_it_moves_along_its_column() -> None:
    from metabonk.common.errors import MetabonkError
    from metabonk.latent.lam import pixel_motion, pooled_motion

    high = pixel_motion(_bar(8), _bar(12), s=6)
    low = pixel_motion(_bar(40), _bar(44), s=6)
    stripes_high, stripes_low = pooled_motion(high, "stripes"), pooled_motion(low, "stripes")
    assert stripes_high.shape == (1, 48)
    assert torch.allclose(stripes_high[:, :24], stripes_low[:, :24], atol=1e-5)  # the 8 column stripes agree
    assert not torch.allclose(pooled_motion(high, "cells"), pooled_motion(low, "cells"))  # the grid cells do not
    with pytest.raises(MetabonkError, match="unknown object-motion pooling"):
        pooled_motion(high, "rings")
    torch.manual_seed(0)
    enc = LatentActionModel(LAMConfig(width=8, frame_size=64, object_shift=6, object_pool="stripes",
                                      vq=VQConfig(num_codes=4, code_dim=8))).encoder
    base = LatentActionModel(LAMConfig(width=8, frame_size=64, vq=VQConfig(num_codes=4, code_dim=8))).encoder
    assert enc.head[0].in_features == base.head[0].in_features + 2 * 3 * 16


def test_object_motion_features_reach_the_latent() -> None:
    torch.manual_seed(0)
    cfg = LAMConfig(width=8, frame_size=64, object_shift=6, vq=VQConfig(num_codes=4, code_dim=8))
    enc = LatentActionModel(cfg).encoder
    still = torch.cat([_bar(20), _bar(20), _bar(20)])[None]
    moved = torch.cat([_bar(20), _bar(20), _bar(26)])[None]
    base = LatentActionModel(LAMConfig(width=8, frame_size=64, vq=VQConfig(num_codes=4, code_dim=8))).encoder
    assert enc.head[0].in_features == base.head[0].in_features + 2 * 3 * 64
    assert not torch.allclose(enc(moved), enc(still))


def test_fullres_trunk_keeps_a_feature_per_position_and_rejects_bad_settings() -> None:
    from metabonk.common.errors import MetabonkError
    from metabonk.latent.lam import conv_trunk

    trunk, width = conv_trunk(LAMConfig(width=8, frame_size=64, trunk="fullres"), cin=9)
    assert width == 2 * 8 * 8 * 8  # 2w channels at 1/8 resolution, flattened (no pooling)
    assert trunk(torch.zeros(2, 9, 64, 64)).shape == (2, width)
    assert conv_trunk(LAMConfig(width=8, frame_size=64, trunk="fullres", crop=32), cin=9)[1] == 2 * 8 * 4 * 4
    assert conv_trunk(LAMConfig(width=8), cin=9)[1] == 2 * 8 * 16  # pooled: 4x4 whatever the size
    with pytest.raises(MetabonkError, match="divisible by 8"):
        conv_trunk(LAMConfig(frame_size=60, trunk="fullres"), cin=9)
    with pytest.raises(MetabonkError, match="unknown encoder trunk"):
        conv_trunk(LAMConfig(trunk="wide"), cin=9)


def test_fullres_trunk_idm_learns_and_round_trips(tmp_path: Path) -> None:
    from metabonk.latent.evaluate import evaluate_idm
    from metabonk.latent.idm import IDMConfig, InverseDynamicsModel
    from metabonk.latent.synthetic import scrolled_video
    from metabonk.latent.train import TrainConfig, train_idm

    train, held = scrolled_video(episodes=6, steps=80, size=16, seed=1), scrolled_video(episodes=2, steps=80,
                                                                                        size=16, seed=2)
    cfg = TrainConfig(steps=150, batch=32, lr=2e-3, device="cpu", resume=False, quiet=True, save_every=150,
                      threads=1)
    idm = train_idm(train, tmp_path / "idm", cfg, labelled=0, model_cfg=IDMConfig(trunk="fullres", width=8))
    figures = evaluate_idm(idm, held)
    assert figures["movement_accuracy"] > figures["movement_majority_baseline"] + 0.3, figures
    loaded = InverseDynamicsModel.load(tmp_path / "idm", "cpu")
    assert loaded.config.trunk == "fullres"
    window = held.windows(np.arange(8), idm.config.context)
    assert torch.equal(loaded.predict(window)["action"], idm.predict(window)["action"])


def test_train_lam_rejects_an_unknown_trunk_before_reading_data(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "metabonk", "train", "lam", "--data", str(tmp_path / "none"),
                        "--out", str(tmp_path / "o"), "--trunk", "wide"], capture_output=True, text=True, timeout=120)
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "--trunk must be one of pooled, fullres, got 'wide'" in lines[0]
    assert not (tmp_path / "o").exists()
