"""Arena's frame skip: one step of `frame_skip=k` is k ticks of the same action, with rewards and event counts
summed, the last tick observed, and nothing counted after a game ends inside the step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metabonk.common.errors import MetabonkError
from metabonk.envs import make_env
from metabonk.envs.arena import ArenaConfig, ArenaGame


def _actions(steps: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 21, size=(steps, n))


def test_one_skipped_step_is_k_ticks_of_the_same_action() -> None:
    n, k, steps = 6, 4, 150
    skip = ArenaGame(ArenaConfig(frame_skip=k, frame_size=32), n, "cpu", seed=3)
    tick = ArenaGame(ArenaConfig(frame_size=32), n, "cpu", seed=3)
    ended = 0
    for a in _actions(steps, n, 0):
        a_t = torch.from_numpy(a)
        r, term, trunc, info = skip.step(a_t)
        r_sum, term_any, trunc_any = torch.zeros(n), torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
        kills = torch.zeros(n, dtype=torch.long)
        for _ in range(k):
            r1, te1, tr1, info1 = tick.step(a_t)
            r_sum, term_any, trunc_any = r_sum + r1, term_any | te1, trunc_any | tr1
            kills = kills + info1["kills"]
        torch.testing.assert_close(r, r_sum)
        assert torch.equal(term, term_any) and torch.equal(trunc, trunc_any)
        assert torch.equal(info["kills"], kills)
        assert torch.equal(info["menu_open"], info1["menu_open"])
        assert torch.equal(skip.render(), tick.render())
        ended += int((term | trunc).sum())
        done = term | trunc
        if done.any():
            skip.reset_done(done)
            tick.reset_done(done)
    assert ended > 0, "no game ended: the test did not cover an end inside a skipped step"


def test_nothing_counts_after_the_end_inside_a_step() -> None:
    # A game at 0 HP dies on the first tick of the step: that tick pays its survival reward, the 3 after it none.
    cfg = ArenaConfig(frame_skip=4, frame_size=32)
    game = ArenaGame(cfg, 2, "cpu", seed=0)
    game.s["hp"] = torch.tensor([0.0, 100.0])  # row 0 dies on the next tick
    _r, term, _trunc, info = game.step(torch.zeros(2, dtype=torch.long))
    assert bool(term[0]) and not bool(term[1])
    assert float(info["r_survive"][0]) == pytest.approx(cfg.w_survive)  # the dying tick only
    assert float(info["r_survive"][1]) == pytest.approx(4 * cfg.w_survive)


def test_env_episode_length_counts_steps_and_skip_is_checked() -> None:
    env = make_env("arena", num_envs=2, size=32, seed=1, frame_skip=4)
    env.reset(seed=1)
    for _ in range(3):
        _obs, reward, _term, _trunc, info = env.step(np.zeros(2, np.int64))
    assert info["episode_length"].tolist() == [3, 3]
    np.testing.assert_allclose(reward, 4 * ArenaConfig().w_survive, rtol=1e-5)
    with pytest.raises(MetabonkError, match="frame_skip"):
        make_env("arena", num_envs=1, size=32, frame_skip=0)


def test_eval_cli_plays_at_the_frame_skip_asked(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from metabonk.cli import app
    from metabonk.policy.agent import Agent
    from metabonk.policy.config import PolicyConfig
    from tests.hardening_helpers import assert_one_line_error, run_cli

    Agent(PolicyConfig(image_size=32, channels=(8,), feature_dim=16, hidden=8)).save(tmp_path / "p")
    runner = CliRunner()
    out = tmp_path / "e.json"
    r = runner.invoke(app, ["eval", "policy", str(tmp_path / "p"), "--env", "arena", "--episodes", "2",
                            "--frame-skip", "4", "--device", "cpu", "--json", str(out)])
    assert r.exit_code == 0, r.output
    steps = json.loads(out.read_text())["results"]["random"]["survival_mean"]
    assert 40 < steps < 250  # random play lives ~400 ticks: ~110 steps of 4 ticks (~380 steps at frame skip 1)
    code, text = run_cli(["eval", "policy", str(tmp_path / "p"), "--env", "ale:Pong", "--frame-skip", "4"])
    assert_one_line_error(code, text, "Arena option")

