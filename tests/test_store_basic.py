"""Episode store: round trip, window sampling that never crosses episodes, splits, relabelling, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metabonk.common.errors import MetabonkError
from metabonk.data.store import EpisodeStore

SIZE = 8


def tagged_episode(ep: int, T: int) -> dict[str, np.ndarray]:
    """Frames carry (episode, t) in pixel (0,0); action = 100*ep + t, so any window can be checked."""
    obs = np.zeros((T + 1, SIZE, SIZE, 3), np.uint8)
    obs[:, 0, 0, 0] = ep
    obs[:, 0, 0, 1] = np.arange(T + 1)
    return {
        "obs": obs,
        "action": 100 * ep + np.arange(T),
        "reward": np.full(T, float(ep), np.float32),
        "terminated": np.eye(1, T, T - 1, dtype=bool)[0],
        "truncated": np.zeros(T, bool),
        "state": np.tile(np.arange(T + 1, dtype=np.float32)[:, None], (1, 4)),
    }


@pytest.fixture
def store(tmp_path):
    s = EpisodeStore.create(tmp_path / "s", "test", None, SIZE, meta={"note": "x"})
    for ep, T in enumerate([5, 12, 3, 30, 1]):
        s.append(tagged_episode(ep, T), meta={"tag": ep})
    return s


def test_round_trip_and_reopen(store, tmp_path):
    assert len(store) == 5 and store.num_transitions == 5 + 12 + 3 + 30 + 1
    re = EpisodeStore.open(tmp_path / "s")
    assert len(re) == 5 and re.info["meta"] == {"note": "x"} and re.has_actions
    for ep, T in enumerate([5, 12, 3, 30, 1]):
        want = tagged_episode(ep, T)
        got = re.episode(ep)
        assert set(got) == set(want)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
        assert got["action"].dtype == np.int64 and got["reward"].dtype == np.float32
        assert got["terminated"].dtype == np.bool_
        meta = re.episode_meta(ep)
        assert meta["tag"] == ep and meta["length"] == T and meta["return"] == pytest.approx(ep * T)
    assert json.loads((tmp_path / "s" / "store.json").read_text())["frame_size"] == SIZE


def test_windows_never_cross_episodes(store):
    rng = np.random.default_rng(0)
    T = 4
    b = store.sample_windows(256, T, rng, keys=("obs", "action", "reward", "state"))
    assert b["obs"].shape == (256, T + 1, SIZE, SIZE, 3) and b["obs"].dtype == np.uint8
    assert b["action"].shape == (256, T) and b["reward"].shape == (256, T)
    assert b["state"].shape == (256, T + 1, 4)
    eps = b["obs"][:, :, 0, 0, 0].astype(int)
    ts = b["obs"][:, :, 0, 0, 1].astype(int)
    assert (eps == eps[:, :1]).all(), "a window mixes frames of two episodes"
    assert (np.diff(ts, axis=1) == 1).all(), "frames in a window are not consecutive"
    np.testing.assert_array_equal(b["action"], 100 * eps[:, :T] + ts[:, :T])  # action a_t belongs to x_t
    np.testing.assert_array_equal(eps[:, 0], b["episode"])
    np.testing.assert_array_equal(ts[:, 0], b["start"])
    # only episodes with >= T steps (1, 3, 0 of lengths 12, 30, 5) are sampled, uniformly over windows
    counts = np.bincount(b["episode"], minlength=5)
    assert counts[2] == 0 and counts[4] == 0
    assert counts[3] > counts[1] > counts[0] > 0


def test_sampling_is_seeded_and_respects_episode_subset(store):
    a = store.sample_windows(16, 2, np.random.default_rng(7), episodes=[1, 3])
    b = store.sample_windows(16, 2, np.random.default_rng(7), episodes=[1, 3])
    np.testing.assert_array_equal(a["obs"], b["obs"])
    assert set(a["episode"].tolist()) <= {1, 3}
    with pytest.raises(MetabonkError, match=">= 31 steps"):
        store.sample_windows(4, 31, np.random.default_rng(0))


def test_iter_windows_covers_every_window_once(store):
    T, stride = 3, 2
    seen = []
    for b in store.iter_windows(T, stride, keys=("obs", "action"), batch_size=5):
        assert b["obs"].shape[1:] == (T + 1, SIZE, SIZE, 3) and b["action"].shape[1] == T
        seen += list(zip(b["episode"].tolist(), b["start"].tolist(), strict=True))
    want = [(e, s) for e, L in enumerate([5, 12, 3, 30, 1]) if L >= T for s in range(0, L - T + 1, stride)]
    assert seen == want


def test_split_by_episode(store):
    train, test = store.split(0.4, seed=1)
    assert sorted(train + test) == list(range(5)) and len(test) == 2 and not set(train) & set(test)
    assert store.split(0.4, seed=1) == (train, test)


def test_update_episode_adds_idm_labels(store, tmp_path):
    store.update_episode(1, {"action_idm": np.arange(12) % 3, "action_idm_conf": np.full(12, 0.5)})
    re = EpisodeStore.open(tmp_path / "s")
    ep = re.episode(1)
    assert ep["action_idm"].dtype == np.int64 and ep["action_idm_conf"].dtype == np.float32
    np.testing.assert_array_equal(ep["action"], tagged_episode(1, 12)["action"])  # true actions untouched
    assert re.labelled_fraction() == pytest.approx(1 / 5)
    assert re.episode_meta(1)["tag"] == 1
    with pytest.raises(MetabonkError, match="never overwritten"):
        store.update_episode(1, {"action": np.zeros(12, int)})
    with pytest.raises(MetabonkError, match="shape"):
        store.update_episode(1, {"action_idm": np.zeros((12, 2), int)})


def test_video_episode_defaults_and_has_actions(tmp_path):
    s = EpisodeStore.create(tmp_path / "v", "video", None, SIZE)
    s.append({"obs": np.zeros((4, SIZE, SIZE, 3), np.uint8)})
    ep = s.episode(0)
    assert "action" not in ep and not s.has_actions
    np.testing.assert_array_equal(ep["reward"], np.zeros(3, np.float32))
    np.testing.assert_array_equal(ep["truncated"], [False, False, True])
    with pytest.raises(MetabonkError, match="keys"):
        s.sample_windows(1, 2, np.random.default_rng(0), keys=("obs", "action"))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"obs": np.zeros((4, SIZE, SIZE + 1, 3), np.uint8)}, r"shape \[T\+1,8,8,3\]"),
        ({"obs": np.zeros((4, SIZE, SIZE, 3), np.float32)}, "uint8"),
        ({"obs": np.zeros((1, SIZE, SIZE, 3), np.uint8)}, "at least 2 frames"),
        ({"action": np.zeros(4, np.int64)}, r"shape \[3\]"),
        ({"action": np.zeros(3, np.float32)}, "integers"),
        ({"action": np.array([0, 1, 9])}, r"\[0, 6\)"),
        ({"reward": np.array([0.0, np.nan, 0.0])}, "NaN"),
        ({"terminated": np.array([0, 2, 0])}, "booleans"),
        ({"state": np.zeros((3, 2), np.float32)}, "state"),
    ],
)
def test_append_validation(tmp_path, change, match):
    s = EpisodeStore.create(tmp_path / "s", "test", 6, SIZE)
    ep = {"obs": np.zeros((4, SIZE, SIZE, 3), np.uint8), "action": np.zeros(3, np.int64), **change}
    with pytest.raises(MetabonkError, match=match):
        s.append(ep)
    assert len(s) == 0 and not list((tmp_path / "s" / "episodes").iterdir())


def test_open_and_create_errors(tmp_path):
    with pytest.raises(MetabonkError, match="not an episode store"):
        EpisodeStore.open(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "store.json").write_text("{nope")
    with pytest.raises(MetabonkError, match="not valid JSON"):
        EpisodeStore.open(tmp_path / "bad")
    EpisodeStore.create(tmp_path / "s", "test", 3, SIZE)
    with pytest.raises(MetabonkError, match="already holds"):
        EpisodeStore.create(tmp_path / "s", "test", 3, SIZE)
    with pytest.raises(MetabonkError, match="cannot append"):
        EpisodeStore.create(tmp_path / "s", "test", 3, SIZE * 2, exist_ok=True)
    with pytest.raises(MetabonkError, match="out of range"):
        EpisodeStore.open(tmp_path / "s").episode(0)


def test_second_handle_sees_appends_after_refresh(store, tmp_path):
    other = EpisodeStore.open(tmp_path / "s")
    store.append(tagged_episode(5, 7))
    assert len(other) == 5
    other.refresh()
    assert len(other) == 6 and other.episode(5)["action"][0] == 500
    # a second writer with a stale view does not overwrite: it takes the next free index
    idx = other.append(tagged_episode(6, 2))
    assert idx == 6 and store.append(tagged_episode(7, 2)) == 7
