"""`metabonk train world --size / --target`: the model written is the one asked for; bad values are one line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from metabonk.cli import app
from metabonk.common.errors import MetabonkError
from metabonk.world.synthetic import write_store


def _train(tmp_path: Path, *extra: str):
    return CliRunner().invoke(app, ["train", "world", "--data", str(tmp_path / "store"), "--out",
                                    str(tmp_path / "w"), "--steps", "1", "--batch", "2", "--device", "cpu", *extra])


def test_size_and_target_reach_the_checkpoint(tmp_path: Path) -> None:
    write_store(tmp_path / "store", episodes=3, size=16, max_steps=12, seed=0)
    r = _train(tmp_path, "--size", "small", "--target", "frame", "--context-noise", "0")
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "w" / "config.json").read_text())["config"]
    assert cfg["target"] == "frame" and cfg["num_context"] == 4 and cfg["edm"]["context_noise_max"] == 0.0
    assert cfg["unet"]["channels"] == [16, 32, 32, 64] and cfg["frame_size"] == 16 and cfg["num_actions"] == 9


def test_bad_target_or_size_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    write_store(tmp_path / "store", episodes=3, size=16, max_steps=12, seed=0)
    for extra in (["--target", "pixels"], ["--size", "huge"]):
        r = _train(tmp_path, *extra)
        # metabonk.cli:main prints a MetabonkError as one line and exits non-zero
        assert r.exit_code != 0 and isinstance(r.exception, MetabonkError)
        assert extra[0] in str(r.exception) and "\n" not in str(r.exception)
        assert not (tmp_path / "w").exists()


def test_without_context_noise_sigma_data_is_the_clean_change(tmp_path: Path) -> None:
    """EDM's σ_data is measured on the target as trained: with context noise σ ~ U(0, 0.1) in the delta its variance
    grows by E[σ²] = 0.1² / 3."""
    write_store(tmp_path / "store", episodes=3, size=16, max_steps=12, seed=0)
    sigma = {}
    for noise in ("0", "0.1"):
        r = CliRunner().invoke(app, ["train", "world", "--data", str(tmp_path / "store"), "--out",
                                     str(tmp_path / f"w{noise}"), "--steps", "1", "--batch", "2", "--device", "cpu",
                                     "--size", "tiny", "--context-noise", noise])
        assert r.exit_code == 0, r.output
        sigma[noise] = json.loads((tmp_path / f"w{noise}" / "config.json").read_text())["config"]["edm"]["sigma_data"]
    added = sigma["0.1"] ** 2 - sigma["0"] ** 2
    assert 0.5 * 0.1**2 / 3 < added < 1.5 * 0.1**2 / 3, sigma
