"""`metabonk play arena --human`: scripted keys move the player; --record writes a labelled demo."""

from __future__ import annotations

import os

import numpy as np
import pytest
from typer.testing import CliRunner

from metabonk.envs.arena import ArenaConfig
from metabonk.envs.arena.human import ScriptedKeys, keys_to_action, play_session

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def test_keys_map_to_documented_actions() -> None:
    assert keys_to_action(set(), False) == 0
    assert keys_to_action({"right"}, False) == 1
    assert keys_to_action({"up", "left"}, False) == 4
    assert keys_to_action({"down", "dash"}, False) == 7 + 9
    assert keys_to_action({"2"}, True) == 19
    assert keys_to_action({"2", "left"}, False) == 5  # card keys do nothing while the menu is closed


def test_pressing_keys_moves_the_player_and_record_writes_the_demo(tmp_path: pytest.TempPathFactory) -> None:
    from metabonk.data.store import EpisodeStore

    presses = [{"right"}] * 20 + [{"up"}] * 20 + [{"left", "dash"}] * 5 + [set()] * 5
    cfg = ArenaConfig(spawn_rate_start=0.0, spawn_rate_end=0.0)
    out = tmp_path / "demo"  # type: ignore[operator]
    res = play_session(cfg, seed=0, keys=ScriptedKeys(presses), record_dir=out, fps=0, scale=2)
    x = np.array([p[0] for p in res.positions])
    y = np.array([p[1] for p in res.positions])
    assert x[19] - x[0] > 4.0 and abs(y[19] - y[0]) < 1e-4  # east
    assert y[39] - y[20] > 4.0 and abs(x[39] - x[20]) < 1e-4  # north
    assert x[39] - x[44] > 5 * 0.25 * 1.5  # dashing west moves faster than walking
    store = EpisodeStore.open(out)
    assert len(store) == 1 and store.num_actions == 21
    ep = store.episode(0)
    assert ep["action"].tolist() == res.actions == [1] * 20 + [3] * 20 + [14] * 5 + [0] * 5
    assert ep["obs"].shape == (51, 64, 64, 3) and ep["state"].shape[0] == 51
    assert bool(ep["truncated"][-1]) and not ep["terminated"].any()
    assert not np.array_equal(ep["obs"][0], ep["obs"][10])  # the camera followed the player


def test_cli_play_arena_records(tmp_path: pytest.TempPathFactory) -> None:
    from metabonk.cli import app
    from metabonk.data.store import EpisodeStore

    out = tmp_path / "rec"  # type: ignore[operator]
    r = CliRunner().invoke(
        app,
        [
            "play",
            "arena",
            "--policy",
            "expert",
            "--max-steps",
            "30",
            "--fps",
            "1000",
            "--scale",
            "1",
            "--record",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "wrote 1 episode" in r.output
    assert EpisodeStore.open(out).episode(0)["action"].shape == (30,)


def test_cli_human_runs_headless_and_rejects_bad_policy() -> None:
    from metabonk.cli import app

    r = CliRunner().invoke(
        app, ["play", "arena", "--human", "--max-steps", "5", "--fps", "1000", "--scale", "1"]
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["play", "arena", "--policy", "nope", "--max-steps", "5"])
    assert r.exit_code != 0
