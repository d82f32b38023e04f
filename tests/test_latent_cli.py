"""The latent verbs end to end on a tiny synthetic store: train lam/idm/adapter, label, eval --json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from metabonk.cli import app
from metabonk.data.store import EpisodeStore
from metabonk.latent.synthetic import scrolled_video


def _store(path: Path) -> Path:
    data = scrolled_video(episodes=5, steps=24, size=16, seed=3)
    store = EpisodeStore.create(path, "arena", 21, 16)
    for obs, act in zip(data.frames, data.actions, strict=True):
        t = int(act.shape[0])
        store.append({"obs": obs.numpy(), "action": act.numpy(), "reward": np.zeros(t, np.float32),
                      "terminated": np.zeros(t, bool), "truncated": np.zeros(t, bool)})
    return path


def _ok(runner: CliRunner, args: list[str]) -> str:
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_latent_verbs_end_to_end(tmp_path: Path) -> None:
    runner = CliRunner()
    data = _store(tmp_path / "store")
    lam, idm, adapter = tmp_path / "lam", tmp_path / "idm", tmp_path / "adapter"
    common = ["--data", str(data), "--steps", "3", "--batch", "4", "--device", "cpu", "--threads", "1"]
    _ok(runner, ["train", "lam", *common, "--out", str(lam), "--width", "8", "--codes", "4"])
    assert json.loads((lam / "config.json").read_text())["kind"] == "lam"
    _ok(runner, ["train", "idm", *common, "--out", str(idm), "--labelled-transitions", "50"])
    _ok(runner, ["train", "adapter", "--data", str(data), "--out", str(adapter), "--lam", str(lam),
                 "--labelled-transitions", "40", "--device", "cpu"])
    assert json.loads((adapter / "config.json").read_text())["kind"] == "adapter"
    _ok(runner, ["label", "--idm", str(idm), "--data", str(data), "--device", "cpu"])
    ep = EpisodeStore.open(data).episode(0, keys=["action_idm", "action_idm_conf"])
    assert ep["action_idm"].shape == (24,)
    out = tmp_path / "eval.json"
    _ok(runner, ["eval", "lam", str(lam), "--data", str(data), "--json", str(out), "--device", "cpu"])
    figures = json.loads(out.read_text())["results"]
    for key in ("probe_accuracy", "probe_majority_baseline", "delta_t_psnr_db", "perplexity", "codes_used"):
        assert key in figures
    out_idm = tmp_path / "idm.json"
    _ok(runner, ["eval", str(idm), "--data", str(data), "--json", str(out_idm), "--device", "cpu"])
    assert "movement_accuracy" in json.loads(out_idm.read_text())["results"]


def test_wrong_kind_and_missing_store_are_user_errors(tmp_path: Path) -> None:
    from metabonk.common.errors import MetabonkError
    from metabonk.latent.data import load_transitions
    from metabonk.latent.lam import LatentActionModel

    try:
        load_transitions(tmp_path / "nope")
    except MetabonkError as e:
        assert "does not exist" in str(e)
    else:
        raise AssertionError("expected MetabonkError")
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "config.json").write_text(json.dumps({"kind": "idm", "config": {}}))
    try:
        LatentActionModel.load(tmp_path / "ck")
    except MetabonkError as e:
        assert "expected 'lam'" in str(e)
    else:
        raise AssertionError("expected MetabonkError")


def test_train_lam_takes_the_inertia_options_and_rejects_decoder_motion_without_its_range(tmp_path: Path) -> None:
    runner = CliRunner()
    data = _store(tmp_path / "store")
    common = ["--data", str(data), "--steps", "3", "--batch", "4", "--device", "cpu", "--threads", "1",
              "--width", "8", "--codes", "4"]
    _ok(runner, ["train", "lam", *common, "--out", str(tmp_path / "lam"), "--decoder-motion", "--object-shift", "2",
                 "--independence-weight", "0.01"])
    cfg = json.loads((tmp_path / "lam" / "config.json").read_text())["config"]
    assert cfg["decoder_motion"] is True and cfg["independence_weight"] == 0.01
    bad = runner.invoke(app, ["train", "lam", *common, "--out", str(tmp_path / "bad"), "--decoder-motion"])
    assert bad.exit_code != 0 and "--decoder-motion needs --object-shift" in str(bad.exception)
    assert not (tmp_path / "bad").exists()


def test_train_idm_takes_the_window_and_motion_options_and_label_writes_probabilities(tmp_path: Path) -> None:
    runner = CliRunner()
    data = _store(tmp_path / "store")
    common = ["--data", str(data), "--steps", "3", "--batch", "4", "--device", "cpu", "--threads", "1",
              "--width", "8"]
    idm = tmp_path / "idm"
    _ok(runner, ["train", "idm", *common, "--out", str(idm), "--context", "2", "--future", "1", "--object-shift", "2",
                 "--object-pool", "stripes"])
    cfg = json.loads((idm / "config.json").read_text())["config"]
    assert (cfg["context"], cfg["future"], cfg["object_shift"], cfg["object_pool"]) == (2, 1, 2, "stripes")
    _ok(runner, ["label", "--idm", str(idm), "--data", str(data), "--device", "cpu"])
    ep = EpisodeStore.open(data).episode(0, keys=["action_idm", "action_idm_conf", "action_idm_probs"])
    assert ep["action_idm_probs"].shape == (24, 21)
    assert np.allclose(ep["action_idm_probs"].sum(1), 1.0, atol=1e-4)
    assert np.array_equal(ep["action_idm_probs"].argmax(1), ep["action_idm"])
    assert np.allclose(ep["action_idm_probs"].max(1), ep["action_idm_conf"])
    out = _ok(runner, ["train", "idm", *common, "--out", str(tmp_path / "cal"), "--calibrate", "0.5"])
    doc = json.loads((tmp_path / "cal" / "config.json").read_text())
    assert doc["meta"]["calibration"]["transitions"] == 48  # the last half of each of the 4 training episodes
    assert doc["config"]["temperature"] == doc["meta"]["calibration"]["temperature"]
    assert "softmax temperature" in out
    bad = runner.invoke(app, ["train", "idm", *common, "--out", str(tmp_path / "bad"), "--object-pool", "rings"])
    assert bad.exit_code != 0 and "unknown --object-pool" in str(bad.exception)
    assert not (tmp_path / "bad").exists()
