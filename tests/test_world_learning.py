"""A tiny world model trained on CPU on a scrolling game beats copy-last-frame at every step and is controllable;
training resumes from its checkpoint; the CLI trains, dreams and evaluates; the dream
is steerable headless."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from metabonk.world.config import UNetConfig, tiny_config
from metabonk.world.eval_store import evaluate_on_store
from metabonk.world.synthetic import write_store
from metabonk.world.train import TrainConfig, train_world
from metabonk.world.world_model import WorldModel, read_meta

# the module fixture trains 2400 steps (~2-4 min on one free core): room for a busy machine
pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("world")
    torch.set_num_threads(1)  # tiny tensors: intra-op threads only thrash on a shared 2-core machine
    torch.manual_seed(0)
    store = write_store(d / "store", episodes=24, size=16, max_steps=80, seed=0)
    cfg = tiny_config(frame_size=16, num_actions=9, num_context=2)
    cfg.unet = UNetConfig(channels=(32, 32), depths=(1, 1), cond_channels=64, num_groups=8)
    tc = TrainConfig(
        # 1200 steps left the model at the edge of controllability: over 8 seeds its mean direction cosine spread
        # from -0.06 to 0.70 and the test passed or failed with the CPU's float rounding; at 2400 steps 8 runs (6
        # seeds, 1 and 2 threads) gave between/redraw 2.85-4.5 and PSNR above copy-last at every step
        # (benchmarks/results/world-test-spread.jsonl, benchmarks/wl_probe.py)
        steps=int(os.environ.get("WORLD_TEST_STEPS", "2400")),
        batch=16,
        lr=2e-3,
        warmup_steps=20,
        device="cpu",
        holdout=0.2,
        save_every=10_000,
    )
    model = train_world(d / "store", d / "ckpt", tc, cfg, show_progress=False)
    return d, store, model


def test_learns_next_frame(trained) -> None:
    d, store, model = trained
    res = evaluate_on_store(model, read_meta(d / "ckpt"), store, horizon=4, max_starts=64)
    untrained = WorldModel(model.config).eval()
    base = evaluate_on_store(untrained, read_meta(d / "ckpt"), store, horizon=4, max_starts=64)
    # the trained dream is far closer to the real next frame than an untrained model's
    assert res["psnr_db"][0] > base["psnr_db"][0] + 3.0, (res["psnr_db"], base["psnr_db"])
    assert res["ssim"][0] > base["ssim"][0] + 0.1


def test_beats_copy_last_and_is_controllable(trained) -> None:
    d, store, model = trained
    res = evaluate_on_store(model, read_meta(d / "ckpt"), store, horizon=4, max_starts=64)
    # PSNR of the mean squared error over the held-out starts, at each of 4 open-loop steps
    assert res["psnr_db"][0] > res["copy_last_psnr_db"][0] + 1.0, res
    assert all(a > b for a, b in zip(res["psnr_db"], res["copy_last_psnr_db"], strict=True)), res
    con = res["controllability"]
    # the view moves the way each move action points (as in the real data): the median over directions, since a
    # direction seen in only a few held-out windows can score -1 by itself (8 runs at 2400 steps: medians 0.76-1.0,
    # means 0.56-1.0; at 1200 steps medians down to 0.0 — benchmarks/results/world-test-spread.jsonl)
    assert float(np.median(list(con["direction_cosine"].values()))) > 0.5, con
    # every action is dreamed with the same noise, so a model blind to actions gives between_action_diff = 0;
    # here new tiles entering the 16-px view are drawn afresh by each noise draw, so a redraw differs a lot too
    # (at 2400 steps between/redraw was 2.85-4.5 over 8 runs, at 1200 steps 0.68-1.54: the bar is 2)
    assert con["between_action_diff"] > 2.0 * con["same_action_redraw_diff"], con


def test_resume_continues(trained, tmp_path) -> None:
    d, _, _ = trained
    import shutil

    shutil.copytree(d / "ckpt", tmp_path / "ckpt")
    step0 = read_meta(tmp_path / "ckpt")["step"]
    tc = TrainConfig(steps=step0 + 3, batch=4, device="cpu", holdout=0.2)
    train_world(d / "store", tmp_path / "ckpt", tc, show_progress=False)
    assert read_meta(tmp_path / "ckpt")["step"] == step0 + 3


def test_cli_dream_eval_and_headless_play(trained, tmp_path) -> None:
    from metabonk.cli import app
    from metabonk.world.human import Keys, keys_to_action, play_dream

    d, store, model = trained
    runner = CliRunner()
    r = runner.invoke(
        app,
        [
            "dream",
            str(d / "ckpt"),
            "--data",
            str(d / "store"),
            "--steps",
            "8",
            "--out",
            str(tmp_path / "d.gif"),
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "d.gif").stat().st_size > 0
    r = runner.invoke(
        app,
        [
            "eval",
            "world",
            str(d / "ckpt"),
            "--data",
            str(d / "store"),
            "--device",
            "cpu",
            "--json",
            str(tmp_path / "e.json"),
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "e.json").read_text())["results"]
    assert len(doc["psnr_db"]) == 16
    assert keys_to_action(Keys(right=True)) == 1 and keys_to_action(Keys(up=True, left=True, dash=True)) == 13
    assert keys_to_action(Keys(card=2)) == 20 and keys_to_action(Keys(down=True), num_actions=9) == 7
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    ep = store.episode(0)
    seen: list[np.ndarray] = []
    res = play_dream(
        model, ep["obs"][:2], ep["action"][:2], events=[Keys(right=True)] * 5, on_frame=seen.append
    )
    assert res["steps"] == 5 and len(seen) == 5 and seen[0].shape == (16, 16, 3)
