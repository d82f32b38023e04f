"""The episode store trusts no header: truncated or tampered episodes, full disks, racing creators, stale temps."""

from __future__ import annotations

import json
import multiprocessing
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors import SafetensorError

from metabonk.common.errors import MetabonkError
from metabonk.data import durable
from metabonk.data.store import EpisodeStore
from tests.hardening_helpers import assert_one_line_error, run_cli

SIZE = 16


def _episode(t: int = 40) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"obs": rng.integers(0, 255, (t + 1, SIZE, SIZE, 3), dtype=np.uint8),
            "action": np.zeros(t, np.int64), "reward": np.ones(t, np.float32),
            "terminated": np.eye(1, t, t - 1, dtype=bool)[0], "truncated": np.zeros(t, bool)}


def _store(path: Path, n: int = 2) -> EpisodeStore:
    s = EpisodeStore.create(path, "arena", 21, SIZE)
    for _ in range(n):
        s.append(_episode())
    return s


def _edit_header(f: Path, change) -> None:  # type: ignore[no-untyped-def]
    raw = f.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    change(header)
    head = json.dumps(header).encode()
    f.write_bytes(struct.pack("<Q", len(head)) + head + raw[8 + n:])


@pytest.mark.parametrize(("damage", "words"), [
    ("truncate", "is truncated"),
    ("trillion", "does not match"),
    ("no_shape", "no valid shape"),
])
def test_damaged_episode_is_refused_on_open(tmp_path: Path, damage: str, words: str) -> None:
    _store(tmp_path / "s")
    ep = tmp_path / "s" / "episodes" / "ep_000001.safetensors"
    if damage == "truncate":
        ep.write_bytes(ep.read_bytes()[: ep.stat().st_size // 2])
    elif damage == "trillion":
        _edit_header(ep, lambda h: h["obs"].__setitem__("shape", [10**12, SIZE, SIZE, 3]))
    else:
        _edit_header(ep, lambda h: h["reward"].pop("shape"))
    with pytest.raises(MetabonkError, match=words):
        EpisodeStore.open(tmp_path / "s")
    code, text = run_cli(["data", "info", str(tmp_path / "s")])
    assert_one_line_error(code, text, words)


def test_full_disk_is_one_line_that_counts_the_kept_episodes(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    s = _store(tmp_path / "s", n=1)

    def full(*_args: object, **_kw: object) -> None:
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                              'message: "No space left on device" })')

    monkeypatch.setattr(durable, "save_file", full)
    with pytest.raises(MetabonkError, match=r"No space left on device \(1 episodes kept\)"):
        s.append(_episode())
    assert [p.name for p in (tmp_path / "s" / "episodes").iterdir()] == ["ep_000000.safetensors"]


def test_stale_temp_files_of_dead_writers_are_removed_on_open(tmp_path: Path) -> None:
    _store(tmp_path / "s", n=1)
    eps = tmp_path / "s" / "episodes"
    dead = multiprocessing.get_context("spawn").Process(target=int)
    dead.start()
    dead.join()
    stale = eps / f".ep_000001.safetensors.tmp-{dead.pid}-1"
    live = eps / f".ep_000002.safetensors.tmp-{os.getpid()}-1"
    stale.write_bytes(b"x" * 1000)
    live.write_bytes(b"x")
    assert len(EpisodeStore.open(tmp_path / "s")) == 1
    assert not stale.exists() and live.exists()


def _create(path: str, size: int, q: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        EpisodeStore.create(path, "arena", 21, size, exist_ok=True)
        q.put(("ok", size))
    except MetabonkError as e:
        q.put(("refused", str(e)))


def test_two_creators_at_different_sizes_cannot_both_succeed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    for attempt in range(3):
        path = tmp_path / f"s{attempt}"
        q = ctx.Queue()
        procs = [ctx.Process(target=_create, args=(str(path), size, q)) for size in (64, 32)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        results = sorted(q.get(timeout=5)[0] for _ in procs)
        assert results == ["ok", "refused"], results
        assert EpisodeStore.open(path).frame_size in (64, 32)
