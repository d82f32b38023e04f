"""Video ingest/export: mp4 round trip within codec error, corrupt files reported and skipped, fps."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import metabonk.cli  # noqa: F401  (registers every verb)
from metabonk.cli.app import app
from metabonk.common.errors import MetabonkError
from metabonk.data.store import EpisodeStore
from metabonk.data.video import export_episode, ingest_videos, write_video

SIZE = 64


def game_like_frames(T: int, seed: int = 0) -> np.ndarray:
    """Smooth background plus moving solid sprites: the kind of content games produce."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    base = np.stack([xx * 3, yy * 3, (xx + yy) * 2], -1).astype(np.float32)
    frames = np.empty((T, SIZE, SIZE, 3), np.uint8)
    pos = rng.uniform(10, 50, size=(3, 2))
    vel = rng.uniform(-2, 2, size=(3, 2))
    colors = rng.integers(0, 256, size=(3, 3))
    for t in range(T):
        img = base.copy()
        for k in range(3):
            y, x = (pos[k] + vel[k] * t) % (SIZE - 10)
            img[int(y) : int(y) + 10, int(x) : int(x) + 10] = colors[k]
        frames[t] = np.clip(img, 0, 255)
    return frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def test_export_then_ingest_matches_within_codec_error(tmp_path):
    frames = game_like_frames(40)
    store = EpisodeStore.create(tmp_path / "src", "test", 4, SIZE)
    store.append({"obs": frames, "action": np.zeros(39, np.int64)}, meta={"fps": 20})
    mp4 = export_episode(store, 0, tmp_path / "ep.mp4")
    report = ingest_videos([mp4], tmp_path / "back", size=SIZE)
    assert not report.skipped and report.episodes == [0]
    back = EpisodeStore.open(tmp_path / "back")
    got = back.episode(0)
    assert got["obs"].shape == frames.shape and "action" not in got
    assert (got["reward"] == 0).all() and got["truncated"][-1]
    p = psnr(got["obs"], frames)
    mae = np.abs(got["obs"].astype(int) - frames.astype(int)).mean()
    # H.264 at crf 17 + yuv420 chroma subsampling: well above 30 dB and a few grey levels of error,
    # while a frame from elsewhere in the clip is far off.
    print(f"round-trip PSNR {p:.1f} dB, MAE {mae:.2f}")
    assert p > 30.0 and mae < 4.0, (p, mae)
    assert psnr(got["obs"][5], frames[25]) < p - 10
    assert back.episode_meta(0)["fps"] == pytest.approx(20, rel=0.01)


def test_ingest_resamples_fps_and_resizes(tmp_path):
    big = game_like_frames(60).repeat(2, axis=1).repeat(2, axis=2)  # 128x128 at 30 fps for 2 s
    write_video(big, tmp_path / "clip.mkv", fps=30)
    report = ingest_videos([tmp_path], tmp_path / "s", size=32, fps=10)
    store = EpisodeStore.open(tmp_path / "s")
    assert report.ingested and store.frame_size == 32
    assert store.episode(0)["obs"].shape[0] == 20  # 2 s at 10 fps


def test_corrupt_video_is_reported_and_skipped(tmp_path):
    vids = tmp_path / "vids"
    vids.mkdir()
    write_video(game_like_frames(20, 1), vids / "a_good.mp4", fps=15)
    write_video(game_like_frames(25, 2), vids / "c_good.webm", fps=15)
    write_video(game_like_frames(30, 3), vids / "e_good.mkv", fps=15)
    (vids / "b_corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    good = (vids / "a_good.mp4").read_bytes()
    (vids / "d_truncated.mp4").write_bytes(good[: len(good) // 2])
    result = CliRunner().invoke(app, ["ingest", str(vids), "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "b_corrupt.mp4" in result.output and "d_truncated.mp4" in result.output
    store = EpisodeStore.open(tmp_path / "s")
    assert len(store) == 3 and sorted(store.lengths) == [19, 24, 29]
    names = {store.episode_meta(i)["source"].rsplit("/", 1)[-1] for i in range(3)}
    assert names == {"a_good.mp4", "c_good.webm", "e_good.mkv"}


def test_nothing_ingestable_is_an_error(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"not a video at all")
    with pytest.raises(MetabonkError, match=r"x\.mp4"):
        CliRunner().invoke(app, ["ingest", str(tmp_path / "x.mp4"), "--out", str(tmp_path / "s")],
                           catch_exceptions=False)
    report = ingest_videos([tmp_path / "missing.mp4", tmp_path / "x.mp4"], tmp_path / "s2")
    assert (report.skipped[0][0].name, report.skipped[0][1]) == ("missing.mp4", "no such file")
    assert len(report.skipped) == 2 and not report.ingested
    assert not (tmp_path / "s2").exists(), "a failed ingest must not leave an empty store"


def test_data_export_cli_and_info(tmp_path):
    store = EpisodeStore.create(tmp_path / "s", "test", 3, SIZE)
    store.append({"obs": game_like_frames(10), "action": np.ones(9, np.int64), "reward": np.ones(9)})
    r = CliRunner().invoke(app, ["data", "export", str(tmp_path / "s"), "--episode", "0",
                                 "--out", str(tmp_path / "e.mp4"), "--scale", "2"])
    assert r.exit_code == 0, r.output
    import av

    with av.open(str(tmp_path / "e.mp4")) as c:
        s = c.streams.video[0]
        assert (s.width, s.height) == (2 * SIZE, 2 * SIZE)
        assert sum(1 for _ in c.decode(s)) == 10
    r = CliRunner().invoke(app, ["data", "info", str(tmp_path / "s")])
    assert r.exit_code == 0 and "transitions" in r.output and "9" in r.output and "100%" in r.output


def test_reingesting_the_same_file_is_skipped(tmp_path):
    write_video(game_like_frames(12), tmp_path / "a.mp4", fps=15)
    first = ingest_videos([tmp_path / "a.mp4"], tmp_path / "s", size=SIZE)
    again = ingest_videos([tmp_path / "a.mp4"], tmp_path / "s", size=SIZE)
    assert len(first.episodes) == 1 and not again.episodes
    assert again.skipped[0][1] == "already in this store"
    assert len(EpisodeStore.open(tmp_path / "s")) == 1


def test_store_pickles_without_memory_maps(tmp_path):
    import pickle

    store = EpisodeStore.create(tmp_path / "s", "t", None, SIZE)
    store.append({"obs": game_like_frames(5)})
    store.sample_windows(2, 2, np.random.default_rng(0), keys=("obs",))  # opens a memory map
    blob = pickle.dumps(store)
    assert len(blob) < 5 * SIZE * SIZE * 3  # no frame data travels with the pickle
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.episode(0)["obs"], store.episode(0)["obs"])


def test_chunked_ingest_streams_contiguous_episodes(tmp_path):
    frames = game_like_frames(31)
    write_video(frames, tmp_path / "long.mp4", fps=30)
    report = ingest_videos([tmp_path / "long.mp4"], tmp_path / "s", size=SIZE, chunk_steps=10)
    store = EpisodeStore.open(tmp_path / "s")
    assert report.episodes == [0, 1, 2] and store.lengths == [10, 10, 10] and not report.partial
    # chunk k ends on the frame chunk k+1 starts with, so no transition is lost at a boundary
    for k in range(2):
        np.testing.assert_array_equal(store.episode(k)["obs"][-1], store.episode(k + 1)["obs"][0])
    starts = [store.episode_meta(k)["start_time"] for k in range(3)]
    np.testing.assert_allclose(starts, [0, 10 / 30, 20 / 30], atol=1e-3)
    assert psnr(np.concatenate([store.episode(0)["obs"], store.episode(1)["obs"][1:]]), frames[:21]) > 36
