"""`train agent --set KEY=VALUE`: loop and dream settings from the command line, typed as the config's fields,
and a bad one refused with one line before anything is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from metabonk.common.errors import MetabonkError
from metabonk.train.agent_config import loop_config, parse_settings


def test_settings_are_typed_and_reach_the_config() -> None:
    extra = parse_settings(["ac_lr=1e-5", "ac_batch=8", "world_lr=1", "imagination.horizon=8",
                            "imagination.anchor_coef=1", "kernels=eager", "init=none"])
    assert extra["world_lr"] == 1.0 and isinstance(extra["world_lr"], float)  # an int where a float is expected
    assert extra["init"] is None
    imag = extra.pop("imagination")
    cfg = loop_config("default", imagination=imag, **extra)
    assert (cfg.ac_lr, cfg.ac_batch, cfg.kernels) == (1e-5, 8, "eager")
    assert cfg.imagination.horizon == 8 and cfg.imagination.anchor_coef == 1.0
    assert cfg.imagination.return_norm_floor == 0.05  # the preset's other dream settings stay


@pytest.mark.parametrize(("item", "says"), [("ac_lr", "KEY=VALUE"), ("ac_batch=eight", "takes int values"),
                                            ("imagination.nope=1", "unknown dream setting"),
                                            ("ac_lr=true", "takes float values")])
def test_bad_settings_say_why(item: str, says: str) -> None:
    with pytest.raises(MetabonkError, match=says):
        parse_settings([item])


def test_unknown_setting_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "metabonk", "train", "agent", "--out", str(out), "--env", "scroll",
                        "--preset", "tiny", "--device", "cpu", "--set", "nope=1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "nope" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
