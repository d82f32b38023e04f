"""Adaptive compute in the dream: the full schedule only on the frames the first denoiser call finds hardest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from metabonk.common.errors import MetabonkError
from metabonk.world.config import tiny_config
from metabonk.world.dream_env import DreamEnv
from metabonk.world.world_model import WorldModel


def _model(seed: int = 0) -> WorldModel:
    torch.manual_seed(seed)
    w = WorldModel(tiny_config(frame_size=16, num_actions=9)).eval()
    torch.nn.init.normal_(w.denoiser.inner.unet.conv_out.weight, std=0.05)  # zero-initialised: would predict 0
    return w


def _inputs(b: int = 12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ctx = torch.rand(b, 2, 3, 16, 16, generator=g) * 2 - 1
    ctx[: b // 2, 1] = ctx[: b // 2, 0]  # half the rows: a still screen
    acts = torch.randint(0, 9, (b, 2), generator=g)
    return ctx, acts, torch.randn(b, 3, 16, 16, generator=g)


def test_all_hard_is_the_full_sampler_none_hard_is_one_step() -> None:
    m = _model()
    ctx, acts, noise = _inputs()
    s = m.sampler
    torch.testing.assert_close(s.sample_adaptive(ctx, acts, 3, 1.0, noise), s.sample(ctx, acts, 3, noise),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(s.sample_adaptive(ctx, acts, 3, 0.0, noise), s.sample(ctx, acts, 1, noise),
                               atol=1e-6, rtol=0)


def test_the_hardest_frames_get_the_full_schedule() -> None:
    m = _model()
    ctx, acts, noise = _inputs()
    s = m.sampler
    x0 = noise * s.sigmas(3)[0]
    first = s.denoiser.denoise(x0, torch.full((12,), s.sigmas(3)[0]), ctx, acts)
    hard = set(s.difficulty(first, ctx).topk(3).indices.tolist())  # ceil(0.25 * 12) = 3
    out = s.sample_adaptive(ctx, acts, 3, 0.25, noise)
    full, one = s.sample(ctx, acts, 3, noise), s.sample(ctx, acts, 1, noise)
    for i in range(12):
        ref = full[i] if i in hard else one[i]
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)
    assert not torch.allclose(full, one, atol=1e-3)  # the two schedules differ, so the check above means something


def test_random_control_picks_the_same_share() -> None:
    m = _model()
    ctx, acts, noise = _inputs()
    s = m.sampler
    full, one = s.sample(ctx, acts, 3, noise), s.sample(ctx, acts, 1, noise)
    out = s.sample_adaptive(ctx, acts, 3, 0.5, noise, select="random", generator=torch.Generator().manual_seed(3))
    as_full = [bool(torch.allclose(out[i], full[i], atol=1e-5)) for i in range(12)]
    as_one = [bool(torch.allclose(out[i], one[i], atol=1e-6)) for i in range(12)]
    assert sum(as_full) == 6 and all(f != o for f, o in zip(as_full, as_one, strict=True))


def test_bad_settings_are_clear_errors() -> None:
    m = _model()
    ctx, acts, noise = _inputs()
    with pytest.raises(ValueError, match="hard_fraction"):
        m.sampler.sample_adaptive(ctx, acts, 3, 1.5, noise)
    with pytest.raises(ValueError, match="select"):
        m.sampler.sample_adaptive(ctx, acts, 3, 0.5, noise, select="largest")
    with pytest.raises(MetabonkError, match="hard_fraction"):
        DreamEnv(m, hard_fraction=-0.1)


def test_bench_adaptive_writes_every_variant(tmp_path: Path) -> None:
    from metabonk.cli import app
    from metabonk.world.synthetic import write_store

    write_store(tmp_path / "store", episodes=4, size=16, max_steps=30, seed=0)
    _model().save(tmp_path / "world")
    js = tmp_path / "a.json"
    r = CliRunner().invoke(app, ["bench", "adaptive", str(tmp_path / "world"), "--data", str(tmp_path / "store"),
                                 "--fractions", "0.25,0.5", "--horizon", "3", "--starts", "16", "--batch", "8",
                                 "--device", "cpu", "--json", str(js)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rows = {row["variant"]: row for row in json.loads(js.read_text())["results"]["rows"]}
    assert set(rows) == {"1 step", "3 steps", "adaptive 0.25", "random 0.25 (control)", "adaptive 0.5",
                         "random 0.5 (control)"}
    assert rows["adaptive 0.25"]["denoiser_calls_per_frame"] == 1.5  # 1 + 2 · 2/8
    assert rows["3 steps"]["psnr_mean_delta_vs_full_db"] == 0.0
    assert all(len(row["psnr_db"]) == 3 and row["frames_per_s"] > 0 for row in rows.values())
    bad = CliRunner().invoke(app, ["bench", "adaptive", str(tmp_path / "world"), "--data", str(tmp_path / "store"),
                                   "--fractions", "1.5"])
    assert bad.exit_code != 0 and "strictly between 0 and 1" in str(bad.exception or bad.output)


def test_held_out_episodes_recognise_the_training_store_by_any_path(tmp_path: Path, monkeypatch) -> None:
    """A checkpoint trained from a relative path is still recognised when evaluated by an absolute one (and from
    another directory): its training episodes stay out of the scored starts."""
    from metabonk.data.store import EpisodeStore
    from metabonk.world.eval_store import held_out_episodes
    from metabonk.world.synthetic import write_store
    from metabonk.world.train import TrainConfig, train_world
    from metabonk.world.world_model import read_meta

    write_store(tmp_path / "vid", episodes=5, size=16, max_steps=30, seed=0)
    monkeypatch.chdir(tmp_path)
    model = train_world("vid", "world", TrainConfig(steps=2, batch=4, device="cpu", holdout=0.2),
                        tiny_config(frame_size=16, num_actions=9), show_progress=False)
    meta = read_meta(tmp_path / "world")
    assert Path(meta["data"]).is_absolute() and meta["train_episodes"]
    monkeypatch.chdir(tmp_path.parent)
    eps = held_out_episodes(model, meta, EpisodeStore.open(tmp_path / "vid"))
    assert eps and not set(eps) & set(meta["train_episodes"])
    assert sorted(eps + meta["train_episodes"]) == list(range(5))
    relative = {**meta, "data": "vid"}  # an older checkpoint's relative path, read from the directory it was made in
    monkeypatch.chdir(tmp_path)
    assert held_out_episodes(model, relative, EpisodeStore.open(tmp_path / "vid")) == eps
