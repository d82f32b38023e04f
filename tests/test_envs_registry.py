"""make_env for ALE and Crafter: contract shapes, SAME_STEP autoreset, determinism; registry errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metabonk.common.errors import MetabonkError
from metabonk.envs import make_env, num_actions_of
from metabonk.envs.policies import get_policy

METABONK = Path(sys.executable).parent / "metabonk"


def check_obs(obs, n, size, d):
    assert set(obs) == {"pixels", "state"}
    assert obs["pixels"].shape == (n, size, size, 3) and obs["pixels"].dtype == np.uint8
    assert obs["state"].shape == (n, d) and obs["state"].dtype == np.float32


def run_until_end(env, policy, max_steps, obs, info):
    rewards = []
    for t in range(max_steps):
        prev = obs
        obs, r, term, trunc, info = env.step(policy(obs, info))
        rewards.append(r)
        if (term | trunc).any():
            return t + 1, prev, obs, np.array(rewards), term, trunc, info
    raise AssertionError("no episode ended")


def test_ale_pong_contract_and_autoreset():
    env = make_env("ale:Pong", num_envs=2, size=48, seed=0, max_episode_steps=30)
    assert num_actions_of(env) == 6
    obs, info = env.reset(seed=3)
    check_obs(obs, 2, 48, 128)
    assert 0.0 <= obs["state"].min() and obs["state"].max() <= 1.0
    assert obs["pixels"].std() > 5, "frames should show the game, not a blank screen"
    pol = get_policy("ale:Pong", "random", env, seed=0)
    steps, _prev, obs2, rewards, term, trunc, info = run_until_end(env, pol, 100, obs, info)
    assert steps == 30 and trunc.all() and not term.any()
    np.testing.assert_array_equal(info["episode_length"], [30, 30])
    np.testing.assert_allclose(info["episode_return"], rewards.sum(0))
    final = info["final_obs"]
    check_obs(final, 2, 48, 128)
    # SAME_STEP: the returned row is the next episode's first frame, the last frame sits in final_obs
    first, _ = make_env("ale:Pong", num_envs=2, size=48, seed=0).reset(seed=3)
    assert not np.array_equal(final["pixels"], obs2["pixels"])
    assert np.abs(obs2["pixels"].astype(int) - first["pixels"].astype(int)).mean() < 1.0
    env.close()


def test_ale_same_seed_same_trajectory():
    def frames(seed):
        env = make_env("ale:Pong", num_envs=1, size=32, seed=seed)
        obs, info = env.reset(seed=seed)
        pol = get_policy("ale:Pong", "random", env, seed=seed)
        out = []
        for _ in range(60):
            obs, *_, info = env.step(pol(obs, info))
            out.append(obs["pixels"])
        env.close()
        return np.stack(out)

    a, b = frames(1), frames(1)
    np.testing.assert_array_equal(a, b)
    assert (a[-1] != a[0]).any(), "the game should move"


def test_crafter_contract_and_truncation():
    # one small world: Crafter's world generation costs ~1 s per reset at the default 64×64 area
    env = make_env("crafter", num_envs=1, size=32, seed=0, length=12, area=24)
    assert num_actions_of(env) == 17
    obs, info = env.reset(seed=0)
    check_obs(obs, 1, 32, 16)
    assert obs["state"].max() > 0, "crafter starts with health/food/drink/energy"
    assert obs["pixels"].std() > 5
    pol = get_policy("crafter", "random", env, seed=0)
    steps, *_rest, term, trunc, info = run_until_end(env, pol, 50, obs, info)
    assert steps == 12 and trunc.all() and not term.any()
    np.testing.assert_array_equal(info["episode_length"], [12])
    assert info["final_obs"]["pixels"].shape == (1, 32, 32, 3)
    env.close()


def test_random_policy_and_registry_errors():
    env = make_env("ale:Pong", num_envs=3, size=16)
    obs, info = env.reset()
    a = get_policy("ale:Pong", "random", env, seed=0)(obs, info)
    assert a.dtype == np.int64 and a.shape == (3,) and a.min() >= 0 and a.max() < 6
    with pytest.raises(MetabonkError, match="no scripted policy"):  # Pong and Breakout have experts, Freeway none
        get_policy("ale:Freeway", "scripted", env)
    with pytest.raises(MetabonkError, match="unknown policy"):
        get_policy("ale:Pong", "greedy", env)
    with pytest.raises(MetabonkError, match=r"actions must lie in \[0, 6\)"):
        env.step(np.array([0, 1, 6]))
    env.close()
    with pytest.raises(MetabonkError, match="valid: arena, arena-hard, ale:<Game>"):
        make_env("doom")
    with pytest.raises(MetabonkError, match="unknown ALE game 'Pongg'"):
        make_env("ale:Pongg")
    with pytest.raises(MetabonkError, match="bridge://HOST:PORT"):
        make_env("bridge://localhost")
    with pytest.raises(MetabonkError, match="size"):
        make_env("crafter", size=4)


def test_unknown_env_spec_cli_error_and_exit_code(tmp_path):
    proc = subprocess.run(
        [str(METABONK), "record", "nosuchgame", "--out", str(tmp_path / "s")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "300"},
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unknown env spec 'nosuchgame'" in lines[0] and "ale:<Game>" in lines[0]
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "kw"), [("crafter", {}), ("ale:Pong", {"sticky_actions": 0.0})])
def test_full_random_episode_terminates(spec, kw):
    """A random agent eventually dies (Crafter) or loses 21 points (Pong): `terminated`, not `truncated`."""
    env = make_env(spec, num_envs=1, size=32, seed=0, **kw)
    obs, info = env.reset()
    pol = get_policy(spec, "random", env, seed=0)
    steps, *_rest, term, trunc, info = run_until_end(env, pol, 20_000, obs, info)
    assert term.all() and not trunc.any()
    assert info["episode_length"][0] == steps
    if spec == "ale:Pong":
        assert info["episode_return"][0] <= -15
    env.close()
