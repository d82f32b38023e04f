"""Recording: the recorder aligns frames/actions/final_obs exactly; `metabonk record` writes valid stores."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import metabonk.cli  # noqa: F401  (registers every verb)
from metabonk.cli.app import app
from metabonk.common.errors import MetabonkError
from metabonk.data.recorder import EpisodeRecorder
from metabonk.data.store import EpisodeStore

SIZE = 8


class CounterEnv:
    """A SAME_STEP vector env whose frames encode (env, episode, t); env i's episodes last 3 + i steps."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.t = np.zeros(n, int)
        self.ep = np.zeros(n, int)

    def obs(self, t: np.ndarray, ep: np.ndarray) -> dict[str, np.ndarray]:
        px = np.zeros((self.n, SIZE, SIZE, 3), np.uint8)
        px[:, 0, 0, 0] = np.arange(self.n)
        px[:, 0, 0, 1] = ep
        px[:, 0, 0, 2] = t
        return {"pixels": px, "state": np.stack([t, ep], 1).astype(np.float32)}

    def reset(self) -> dict[str, np.ndarray]:
        return self.obs(self.t, self.ep)

    def step(self, actions: np.ndarray):
        self.t = self.t + 1
        done = self.t >= 3 + np.arange(self.n)
        final = self.obs(self.t, self.ep)
        self.ep = np.where(done, self.ep + 1, self.ep)
        self.t = np.where(done, 0, self.t)
        info = {"final_obs": final, "kills": self.t * 10}
        reward = (actions * 0.5).astype(np.float32)
        return self.obs(self.t, self.ep), reward, done, np.zeros(self.n, bool), info


def test_recorder_aligns_frames_actions_and_final_obs(tmp_path):
    store = EpisodeStore.create(tmp_path / "s", "counter", 10, SIZE)
    env = CounterEnv(3)
    rec = EpisodeRecorder(store, 3, info_keys=("kills",), meta={"who": "test"})
    obs = env.reset()
    for _ in range(20):
        actions = (obs["pixels"][:, 0, 0, 2].astype(np.int64) + obs["pixels"][:, 0, 0, 0]) % 10
        nobs, r, te, tr, info = env.step(actions)
        rec.add(obs, actions, r, te, tr, info)
        obs["pixels"][:] = 255  # a caller reusing its buffers must not corrupt what was recorded
        obs = nobs
    # env i finishes an episode every 3+i steps: 20//3 + 20//4 + 20//5 = 6 + 5 + 4
    assert len(store) == 15 and rec.pending_steps() == 2 + 0 + 0
    for i in range(len(store)):
        ep, meta = store.episode(i), store.episode_meta(i)
        env_i = meta["env_index"]
        T = 3 + env_i
        px = ep["obs"][:, 0, 0]
        assert ep["obs"].shape[0] == T + 1 and (px[:, 0] == env_i).all()
        assert (px[:, 1] == meta["env_episode"]).all(), "frames from two episodes were mixed"
        np.testing.assert_array_equal(px[:, 2], np.arange(T + 1))  # last frame is final_obs (t = T)
        np.testing.assert_array_equal(ep["action"], (np.arange(T) + env_i) % 10)  # a_t taken at x_t
        np.testing.assert_allclose(ep["reward"], ep["action"] * 0.5)
        np.testing.assert_array_equal(ep["state"][:, 0], np.arange(T + 1))
        assert ep["terminated"][-1] and ep["terminated"].sum() == 1
        assert ep["info_kills"].shape == (T,) and meta["who"] == "test"


def test_recorder_max_steps_chunks_and_no_actions(tmp_path):
    store = EpisodeStore.create(tmp_path / "s", "counter", 10, SIZE)
    env = CounterEnv(2)  # episodes of 3 and 4 steps, chunked at 2
    rec = EpisodeRecorder(store, 2, keep_actions=False, max_steps=2, max_episodes=5)
    obs = env.reset()
    while not rec.done:
        nobs, r, te, tr, info = env.step(np.zeros(2, np.int64))
        rec.add(obs, np.zeros(2, np.int64), r, te, tr, info)
        obs = nobs
    assert len(store) == 5 and not store.has_actions and max(store.lengths) == 2
    for i in range(5):
        ep = store.episode(i)
        assert "action" not in ep
        t = ep["obs"][:, 0, 0, 2].astype(int)
        assert (np.diff(t) == 1).all()
        assert ep["terminated"][-1] or ep["truncated"][-1]
    with pytest.raises(MetabonkError, match="final_obs"):
        rec2 = EpisodeRecorder(store, 1)
        rec2.add({"pixels": np.zeros((1, SIZE, SIZE, 3), np.uint8)}, [0], [0.0], [True], [False], {})


def test_record_cli_ale_pong_random(tmp_path):
    out = tmp_path / "pong"
    r = CliRunner().invoke(app, ["record", "ale:Pong", "--policy", "random", "--episodes", "3",
                                 "--max-steps", "40", "--num-envs", "2", "--size", "32", "--out", str(out)])
    assert r.exit_code == 0, r.output
    store = EpisodeStore.open(out)
    assert len(store) == 3 and store.info["env_spec"] == "ale:Pong" and store.num_actions == 6
    assert store.info["meta"]["action_meanings"][0] == "NOOP"
    ep = store.episode(0)
    assert ep["obs"].shape == (41, 32, 32, 3) and ep["action"].shape == (40,)
    assert ep["state"].shape == (41, 128)
    assert 0 <= ep["action"].min() and ep["action"].max() < 6 and len(np.unique(ep["action"])) > 1
    assert np.abs(np.diff(ep["obs"].astype(int), axis=0)).sum() > 0
    # the recorded store trains directly: windows sample
    b = store.sample_windows(4, 8, np.random.default_rng(0))
    assert b["obs"].shape == (4, 9, 32, 32, 3)


def test_record_cli_no_actions_and_scripted_error(tmp_path):
    r = CliRunner().invoke(app, ["record", "ale:Pong", "--episodes", "1", "--max-steps", "10", "--size", "16",
                                 "--no-actions", "--out", str(tmp_path / "v")])
    assert r.exit_code == 0, r.output
    store = EpisodeStore.open(tmp_path / "v")
    assert not store.has_actions and "action" not in store.episode(0)
    with pytest.raises(MetabonkError, match="no scripted policy"):  # Pong and Breakout have experts, Freeway none
        CliRunner().invoke(app, ["record", "ale:Freeway", "--policy", "scripted", "--out", str(tmp_path / "x")],
                           catch_exceptions=False)


def _arena_available() -> bool:
    try:
        from metabonk.envs.arena import make_arena_env  # noqa: F401
        from metabonk.envs.arena.policies import RandomPolicy, ScriptedExpert  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _arena_available(), reason="the Arena env (engineer A) has not landed yet")
@pytest.mark.parametrize("policy", ["random", "scripted"])
def test_record_cli_arena(tmp_path, policy):
    out = tmp_path / policy
    r = CliRunner().invoke(app, ["record", "arena", "--policy", policy, "--episodes", "2", "--num-envs", "2",
                                 "--max-steps", "60", "--out", str(out)])
    assert r.exit_code == 0, r.output
    store = EpisodeStore.open(out)
    assert len(store) == 2 and store.num_actions == 21 and store.has_actions
    ep = store.episode(0)
    assert ep["obs"].shape[1:] == (64, 64, 3) and ep["action"].max() < 21
    assert ep["obs"].shape[0] == ep["action"].shape[0] + 1 <= 61


class DyingEnv(CounterEnv):
    """CounterEnv as a VectorEnv-like object whose game 'dies' (MetabonkError) at step 10."""

    def __init__(self, n: int) -> None:
        import gymnasium as gym

        super().__init__(n)
        self.num_envs = n
        self.single_action_space = gym.spaces.Discrete(4)
        self.calls = 0

    def reset(self, seed=None):  # type: ignore[override]
        return super().reset(), {}

    def step(self, actions):
        self.calls += 1
        if self.calls == 10:
            raise MetabonkError("game at 127.0.0.1:9 closed the connection")
        return super().step(actions)

    def close(self) -> None:
        pass


def test_record_keeps_finished_episodes_when_the_game_dies(tmp_path, monkeypatch):
    import metabonk.envs

    monkeypatch.setattr(metabonk.envs, "make_env", lambda spec, **kw: DyingEnv(1))
    from metabonk.data.record import record_episodes

    with pytest.raises(MetabonkError, match=r"closed the connection .*3 finished episode\(s\) kept"):
        record_episodes("bridge://127.0.0.1:9", tmp_path / "s", episodes=10, show_progress=False)
    store = EpisodeStore.open(tmp_path / "s")
    assert len(store) == 3 and store.lengths == [3, 3, 3]
