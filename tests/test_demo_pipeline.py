"""`metabonk demo --preset tiny` end to end: every stage wired, report + PNG + GIFs written, resume skips
finished stages, `stage=X` re-runs one stage alone."""

from __future__ import annotations

import json
import time

import pytest

from metabonk.common.checkpoint import load_trainer_state
from metabonk.common.errors import MetabonkError
from metabonk.demo.pipeline import run_demo, stage_names
from metabonk.demo.presets import get_preset, preset_for_env
from tests.test_policy_helpers import one_thread  # noqa: F401  (autouse fixture)


def test_tiny_demo_end_to_end_and_resume(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a demo writes nothing outside its run folder unless asked to publish
    report = run_demo("tiny", device="cpu", root=tmp_path, name="t")
    run = tmp_path / "t"
    assert report == run / "report.md" and report.is_file()
    text = report.read_text()
    parts = ("Scores in the real game", "expert", "random", "demo (BC + dream)", "curves.png", "agent.gif",
             "dream.gif")
    for part in parts:
        assert part in text
    from PIL import Image

    assert (run / "report" / "curves.png").stat().st_size > 1000
    # Pillow folds identical consecutive frames into one (a barely trained tiny agent may stand still),
    # so the agent GIF is checked as a readable image; the dream GIF must animate.
    with Image.open(run / "report" / "agent.gif") as gif:
        assert gif.format == "GIF" and gif.size[0] >= 32
    with Image.open(run / "report" / "dream.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames > 1
    names = stage_names(get_preset("tiny"))
    done = {s: (run / s / "done.json") for s in names}
    assert all(f.is_file() for f in done.values())
    rec = json.loads(done["record"].read_text())["summary"]
    assert rec["labelled_fraction"] <= 0.05
    labelling = json.loads(done["latent"].read_text())["summary"]["labelling"]
    assert labelling["episodes"] == rec["video"]["episodes"]
    ev = json.loads(done["eval"].read_text())["summary"]
    assert {"random", "expert", "demo (BC + dream)", "BC only"} <= set(ev)
    # the stores and checkpoints each stage hands to the next exist where the next stage reads them
    for path in ("record/video/store.json", "latent/idm/config.json", "world/model/config.json",
                 "bc/policy/config.json", "dream/loop/agent/config.json"):
        assert (run / path).is_file(), path

    # Resume: nothing is re-run.
    stamps = {s: f.stat().st_mtime_ns for s, f in done.items()}
    t0 = time.time()
    run_demo("tiny", device="cpu", root=tmp_path, name="t")
    assert time.time() - t0 < 10
    assert {s: f.stat().st_mtime_ns for s, f in done.items()} == stamps

    assert not (tmp_path / "benchmarks").exists()

    # One stage alone: only its marker changes; --publish also writes the tracked result file.
    run_demo("tiny", device="cpu", root=tmp_path, name="t", stage="report", publish=True)
    after = {s: f.stat().st_mtime_ns for s, f in done.items()}
    assert after["report"] != stamps["report"]
    assert all(after[s] == stamps[s] for s in names if s != "report")
    assert (tmp_path / "benchmarks" / "results" / "eval-demo-arena-tiny.json").is_file()


def test_demo_rejects_bad_stage_and_mismatched_run(tmp_path) -> None:
    with pytest.raises(MetabonkError):
        run_demo("tiny", device="cpu", root=tmp_path, name="x", stage="nonsense")
    with pytest.raises(MetabonkError):
        run_demo("huge", device="cpu", root=tmp_path, name="x")
    with pytest.raises(MetabonkError):  # a later stage alone, before the earlier ones ran
        run_demo("tiny", device="cpu", root=tmp_path, name="y", stage="world")
    with pytest.raises(MetabonkError):  # same folder, other env
        run_demo("tiny", device="cpu", root=tmp_path, name="y", env="ale:Pong", stage="world")


def test_tiny_demo_on_pong_scores_against_expert_and_random(tmp_path, monkeypatch) -> None:
    """On ALE the demo records the scripted RAM expert, scores every agent as (score − random) / (expert − random)
    on the same seeds, and the report states the ≥ 0.8 target either way."""
    monkeypatch.chdir(tmp_path)
    averaged_bc = preset_for_env(get_preset("tiny"), "ale:Pong").replace(bc_lr_final=0.05, bc_ema=0.9)
    report = run_demo(averaged_bc, device="cpu", env="ale:Pong", root=tmp_path, name="p")
    run = tmp_path / "p"
    rec = json.loads((run / "record" / "done.json").read_text())["summary"]
    assert rec["video"]["policy"] == rec["labelled"]["policy"] == "disturbed"  # the expert with random bursts
    ev = json.loads((run / "eval" / "done.json").read_text())["summary"]
    span = ev["expert"]["return_mean"] - ev["random"]["return_mean"]
    for name in ("demo (BC + dream)", "BC only"):
        want = (ev[name]["return_mean"] - ev["random"]["return_mean"]) / span
        assert ev[name]["expert_normalized_return"] == pytest.approx(want)
    bc = load_trainer_state(run / "bc" / "policy")
    assert bc is not None and "raw_weights" in bc  # bc_ema reaches BC: its weights' EMA is the policy
    text = report.read_text()
    assert "(score − random) / (expert − random) ≥ 0.8" in text
    assert f"{ev['demo (BC + dream)']['expert_normalized_return']:.2f}" in text


def test_ale_presets_record_chunks_and_cap_the_evaluation() -> None:
    """A whole expert Pong game is ~28k steps: the ALE presets record 1,000-step chunks, not whole games."""

    arena = preset_for_env(get_preset("default"), "arena")
    pong = preset_for_env(get_preset("default"), "ale:Pong")
    assert arena == get_preset("default")
    assert pong.video_max_steps == 1000 and pong.eval_max_steps == 5000
    assert pong.video_episodes * pong.video_max_steps <= 50_000
    assert pong.labelled_steps <= 0.045 * pong.video_episodes * pong.video_max_steps
    # what BC on Pong needed (docs/demo.md); tiny keeps its own policy sizes under the ALE options
    assert pong.policy == {"pixel_norm": "background", "actor_init_gain": 1.0}
    assert pong.video_policy == "disturbed" and pong.eval_greedy and not arena.eval_greedy
    assert (pong.idm_context, pong.idm_object_shift) == (2, 6) and (arena.idm_context, arena.idm_object_shift) == (1, 0)
    assert (pong.idm_future, pong.idm_object_pool, pong.bc_soft_labels) == (1, "cells", True)
    assert (arena.idm_future, arena.idm_object_pool, arena.bc_soft_labels) == (0, "cells", False)
    tiny = preset_for_env(get_preset("tiny"), "ale:Pong")
    assert tiny.policy == {**get_preset("tiny").policy, "pixel_norm": "background", "actor_init_gain": 1.0}


def test_demo_frame_skip_reaches_the_recording_and_is_kept_per_folder(tmp_path) -> None:
    """`metabonk demo --frame-skip 4`: the recorded games run 4 ticks per step (the store says so), and a folder
    holding a run at one frame skip refuses another."""
    from metabonk.demo.presets import with_frame_skip

    run_demo(with_frame_skip("tiny", "arena", 4), device="cpu", root=tmp_path, name="s", stage="record")
    for store in ("video", "labelled"):
        meta = json.loads((tmp_path / "s" / "record" / store / "store.json").read_text())["meta"]
        assert meta["frame_skip"] == 4
    with pytest.raises(MetabonkError, match="Arena settings"):
        run_demo("tiny", device="cpu", root=tmp_path, name="s", stage="record")
    with pytest.raises(MetabonkError, match="frame-skip"):
        with_frame_skip("tiny", "ale:Pong", 4)


def test_pong_world_model_trains_without_context_noise() -> None:
    """The ALE default preset's world model has no noise on its context frames (docs/world.md: on Pong the delta
    target was mostly that noise); Arena keeps the model's default."""
    from metabonk.demo.stages import _world_config
    from metabonk.world.config import EDMConfig

    pong = preset_for_env(get_preset("default"), "ale:Pong")
    assert _world_config(pong, 6).edm.context_noise_max == 0.0 and pong.world_steps == 1_500
    arena = _world_config(get_preset("default"), 9)
    assert arena.edm.context_noise_max == EDMConfig().context_noise_max > 0
