"""Recording through the bridge when the game process dies mid-episode: a clear error, episodes kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from metabonk.data.recorder import EpisodeRecorder
from metabonk.data.store import EpisodeStore
from metabonk.envs.bridge import BridgeError, BridgeVectorEnv
from tests.test_bridge_support import SIZE, arena_available

SUPPORT = Path(__file__).with_name("test_bridge_support.py")


def _spawn_server(tmp_path: Path, which: str) -> tuple[subprocess.Popen, int]:
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, str(SUPPORT), str(port_file), which],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("server did not start within 60 s")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


@pytest.mark.parametrize("which", ["toy", "arena"])
def test_server_killed_mid_episode_keeps_recorded_episodes(tmp_path: Path, which: str) -> None:
    if which == "arena" and not arena_available():
        pytest.skip("Arena (engineer A) not importable yet")
    proc, port = _spawn_server(tmp_path, which)
    try:
        env = BridgeVectorEnv("127.0.0.1", port, size=SIZE, timeout=10, seed=0)
        store = EpisodeStore.create(tmp_path / "store", env_spec=f"bridge://127.0.0.1:{port}",
                                    num_actions=env.num_actions, frame_size=SIZE)
        recorder = EpisodeRecorder(store, num_envs=1, max_steps=40)
        rng = np.random.default_rng(0)
        obs, _ = env.reset()
        frames_seen: list[np.ndarray] = [obs["pixels"][0]]
        taken: list[int] = []
        with pytest.raises(BridgeError) as err:
            while True:
                actions = rng.integers(0, env.num_actions, 1)
                taken.append(int(actions[0]))
                next_obs, reward, terminated, truncated, info = env.step(actions)
                recorder.add(obs, actions, reward, terminated, truncated, info)
                obs = next_obs
                if recorder.episodes_written >= 3 and recorder.pending_steps() == 3:
                    os.kill(proc.pid, signal.SIGKILL)  # the game dies in the middle of an episode
                    proc.wait(10)
                frames_seen.append(obs["pixels"][0])
        message = str(err.value)
        assert f"127.0.0.1:{port}" in message and "closed the connection" in message, message
        assert recorder.pending_steps() == 3  # the unfinished episode is never written
        reopened = EpisodeStore.open(tmp_path / "store")
        assert len(reopened) == recorder.episodes_written >= 3
        stored_actions = np.concatenate([reopened.episode(i)["action"] for i in range(len(reopened))])
        assert stored_actions.tolist() == taken[:len(stored_actions)]  # the stream, in order, nothing lost
        assert len(taken) - len(stored_actions) == 4  # 3 buffered steps + the step that hit the dead server
        assert np.array_equal(reopened.episode(0)["obs"][0], frames_seen[0])
        for i in range(len(reopened)):
            ep = reopened.episode(i)
            t = ep["action"].shape[0]
            assert ep["obs"].shape == (t + 1, SIZE, SIZE, 3) and ep["reward"].shape == (t,)
            assert bool(ep["terminated"][-1] or ep["truncated"][-1])
        with pytest.raises(BridgeError, match="unusable"):
            env.step(np.array([0]))  # a broken env stays broken, with the reason
        env.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
