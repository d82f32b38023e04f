"""Crash safety: a real writer process SIGKILLed mid-episode leaves every finished episode intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

from metabonk.data.recorder import EpisodeRecorder
from metabonk.data.store import EpisodeStore

SIZE = 32
EP_LEN = 40

WRITER = textwrap.dedent(
    f"""
    import sys, time
    import numpy as np
    from metabonk.data.store import EpisodeStore
    from metabonk.data.recorder import EpisodeRecorder

    path, n_envs = sys.argv[1], 2
    store = EpisodeStore.create(path, "synthetic", 5, {SIZE}, exist_ok=True)
    rec = EpisodeRecorder(store, n_envs)
    t = 0
    while True:  # an endless recording: two sub-envs, episodes of {EP_LEN} steps, out of phase
        phase = (t + np.arange(n_envs) * 17)
        step_in_ep = phase % {EP_LEN}
        ep_id = phase // {EP_LEN}
        obs = np.zeros((n_envs, {SIZE}, {SIZE}, 3), np.uint8)
        obs[:, :, :, 0] = (step_in_ep[:, None, None] * 5) % 256
        obs[:, :, :, 1] = np.arange(n_envs)[:, None, None]
        obs[:, :, :, 2] = ep_id[:, None, None] % 256
        done = step_in_ep == {EP_LEN} - 1
        final = obs.copy()
        final[:, :, :, 0] = ({EP_LEN} * 5) % 256
        actions = step_in_ep % 5
        for i in rec.add({{"pixels": obs}}, actions, np.ones(n_envs), done, np.zeros(n_envs, bool),
                         {{"final_obs": {{"pixels": final}}}}):
            print("wrote", i, flush=True)
        t += 1
        time.sleep(0.0005)
    """
)


def check_episode(ep: dict[str, np.ndarray]) -> None:
    """Every stored episode must be one whole synthetic episode (env 1's first one starts at step 17)."""
    obs = ep["obs"]
    steps = obs[:, 0, 0, 0].astype(int) // 5
    first = int(steps[0])
    assert first in (0, 17) and obs.shape == (EP_LEN + 1 - first, SIZE, SIZE, 3)
    np.testing.assert_array_equal(steps, np.arange(first, EP_LEN + 1))
    assert len(np.unique(obs[..., 1])) == 1 and len(np.unique(obs[..., 2])) == 1
    np.testing.assert_array_equal(ep["action"], np.arange(first, EP_LEN) % 5)
    assert ep["terminated"][-1] and not ep["terminated"][:-1].any()


def run_and_kill(path: str, min_episodes: int, extra_delay: float) -> int:
    """Start the writer, wait until it reports `min_episodes` new episodes, sleep, SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        seen = 0
        deadline = time.monotonic() + 60
        while seen < min_episodes and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line.startswith("wrote")
        assert seen >= min_episodes, "writer did not produce episodes"
        time.sleep(extra_delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    return seen


def test_sigkill_mid_episode_keeps_finished_episodes(tmp_path):
    path = str(tmp_path / "store")
    total_reported = 0
    for round_, delay in enumerate([0.013, 0.031, 0.0]):
        total_reported += run_and_kill(path, min_episodes=3, extra_delay=delay)
        store = EpisodeStore.open(path)  # re-openable after every kill
        assert len(store) >= total_reported, "an episode reported as written is missing"
        for i in range(len(store)):
            check_episode(store.episode(i))
        total_reported = len(store)
        # windows sample fine across everything that survived
        b = store.sample_windows(8, 10, np.random.default_rng(round_))
        assert b["obs"].shape == (8, 11, SIZE, SIZE, 3)
    # appends continue in this process after the crashes
    before = len(store)
    rec = EpisodeRecorder(store, 1)
    obs = {"pixels": np.zeros((1, SIZE, SIZE, 3), np.uint8)}
    for t in range(3):
        rec.add(obs, np.array([1]), np.zeros(1), np.array([t == 2]), np.zeros(1, bool), {"final_obs": obs})
    assert len(EpisodeStore.open(path)) == before + 1


def test_leftover_temp_file_is_ignored(tmp_path):
    store = EpisodeStore.create(tmp_path / "s", "x", None, 4)
    store.append({"obs": np.zeros((3, 4, 4, 3), np.uint8)})
    (tmp_path / "s" / "episodes" / ".ep_000001.safetensors.tmp-999").write_bytes(b"\x00half-written")
    re = EpisodeStore.open(tmp_path / "s")
    assert len(re) == 1
    assert re.append({"obs": np.ones((3, 4, 4, 3), np.uint8)}) == 1
    assert EpisodeStore.open(tmp_path / "s").episode(1)["obs"].max() == 1


CONCURRENT_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from metabonk.data.store import EpisodeStore

    store = EpisodeStore.open(sys.argv[1])
    who = int(sys.argv[2])
    for k in range(12):
        obs = np.full((3, 4, 4, 3), who, np.uint8)
        obs[:, 0, 0, 1] = k
        store.append({"obs": obs}, meta={"who": who, "k": k})
    """
)


def test_two_concurrent_writers_never_overwrite_each_other(tmp_path):
    EpisodeStore.create(tmp_path / "s", "x", None, 4)
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, str(tmp_path / "s"), str(w)])
             for w in (1, 2)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    store = EpisodeStore.open(tmp_path / "s")
    got = sorted((store.episode_meta(i)["who"], store.episode_meta(i)["k"]) for i in range(len(store)))
    assert got == [(w, k) for w in (1, 2) for k in range(12)]
    for i in range(len(store)):  # data and metadata of each file belong together
        obs, meta = store.episode(i)["obs"], store.episode_meta(i)
        assert obs[0, 1, 1, 0] == meta["who"] and obs[0, 0, 0, 1] == meta["k"]
