"""The episode store: a directory of one safetensors file per finished episode plus `store.json`.

Layout (see docs/architecture.md and docs/adr/0001-episode-store.md)::

    DIR/store.json                    {"format", "version", "env_spec", "num_actions", "frame_size", "meta"}
    DIR/episodes/ep_000000.safetensors obs [T+1,H,W,3] u8, action [T] i64 (absent for video), reward [T] f32,
                                       terminated/truncated [T] bool, optional state [T+1,D] f32, ...

Each episode is written to a temp file, fsynced, then linked/renamed into place, so a writer killed at any
moment leaves every finished episode readable. Per-episode metadata lives in the safetensors header, so
data and metadata land in the same atomic rename. Reads are memory-mapped and only touch the slices asked for.
"""

from __future__ import annotations

import errno
import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metabonk.common.errors import MetabonkError
from metabonk.data.durable import fsync_dir, os_reason, remove_stale_temps, write_safetensors_durable
from metabonk.data.mmap_file import TensorFile
from metabonk.data.validate import STEP_KEYS, validate_episode, validate_update

FORMAT = "metabonk-episodes"
VERSION = 1
STORE_JSON = "store.json"
EPISODES_DIR = "episodes"
_EP_RE = re.compile(r"^ep_(\d{6,})\.safetensors$")
_MAX_OPEN = 128


class EpisodeStore:
    """Append-only, crash-safe store of episodes with random access to windows of T steps."""

    def __init__(self, path: Path, info: dict[str, Any]) -> None:
        self.path = Path(path)
        self.info = info
        self._files: list[Path] = []
        self._lengths: list[int] = []
        self._keys: list[frozenset[str]] = []
        self._meta: list[dict[str, Any]] = []
        self._handles: OrderedDict[int, TensorFile] = OrderedDict()
        remove_stale_temps(self.path / EPISODES_DIR)
        self.refresh()

    # ---------------------------------------------------------------- create / open
    @classmethod
    def create(
        cls,
        path: str | Path,
        env_spec: str,
        num_actions: int | None,
        frame_size: int,
        meta: dict[str, Any] | None = None,
        exist_ok: bool = False,
    ) -> EpisodeStore:
        """Make a new empty store at `path` (an existing store is reopened if `exist_ok` and compatible)."""
        path = Path(path)
        if (path / STORE_JSON).is_file():
            if not exist_ok:
                raise MetabonkError(f"{path} already holds an episode store; choose a new --out directory")
            store = cls.open(path)
            if store.frame_size != frame_size or store.info.get("env_spec") != env_spec:
                raise MetabonkError(
                    f"{path} holds a store of {store.info.get('env_spec')} at {store.frame_size}px; "
                    f"cannot append {env_spec} at {frame_size}px"
                )
            return store
        if path.exists() and not path.is_dir():
            raise MetabonkError(f"{path} exists and is not a directory")
        if path.is_dir() and any(path.iterdir()):
            raise MetabonkError(f"{path} is a non-empty directory without {STORE_JSON}; refusing to use it")
        if num_actions is not None and num_actions <= 0:
            raise MetabonkError(f"num_actions must be positive or None, got {num_actions}")
        if frame_size <= 0:
            raise MetabonkError(f"frame_size must be positive, got {frame_size}")
        info = {
            "format": FORMAT,
            "version": VERSION,
            "env_spec": env_spec,
            "num_actions": None if num_actions is None else int(num_actions),
            "frame_size": int(frame_size),
            "meta": dict(meta or {}),
        }
        (path / EPISODES_DIR).mkdir(parents=True, exist_ok=True)
        tmp = path / f".{STORE_JSON}.tmp-{os.getpid()}-{threading.get_ident()}"
        try:
            tmp.write_text(json.dumps(info, indent=2) + "\n")
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.link(tmp, path / STORE_JSON)  # fails if another process created the store first
        except FileExistsError:
            return cls.create(path, env_spec, num_actions, frame_size, meta, exist_ok)  # theirs: check it
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                raise MetabonkError(f"cannot create the episode store {path}: {os_reason(e)}") from e
            os.replace(tmp, path / STORE_JSON)  # no hard links here: single-creator safe only
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(path)
        return cls(path, info)

    @classmethod
    def open(cls, path: str | Path) -> EpisodeStore:
        """Open an existing store; a clear MetabonkError if `path` is not one."""
        path = Path(path)
        sj = path / STORE_JSON
        if not sj.is_file():
            raise MetabonkError(f"{path} is not an episode store (no {STORE_JSON})")
        try:
            info = json.loads(sj.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise MetabonkError(f"{sj} is not valid JSON: {e}") from e
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise MetabonkError(f"{sj} is not a MetaBonk episode store (format != {FORMAT!r})")
        if int(info.get("version", 0)) > VERSION:
            found = info.get("version")
            raise MetabonkError(f"{path} is store version {found}; this build reads <= {VERSION}")
        return cls(path, info)

    def refresh(self) -> None:
        """Rescan the episode directory (picks up episodes appended by another process)."""
        ep_dir = self.path / EPISODES_DIR
        names = sorted(
            (int(m.group(1)), p) for p in ep_dir.iterdir() if (m := _EP_RE.match(p.name))
        ) if ep_dir.is_dir() else []
        known = len(self._files)
        for _, p in names[known:]:
            self._index_file(p)

    def _index_file(self, p: Path) -> None:
        f = TensorFile(p)  # header only: no tensor data is read here
        if "reward" not in f.entries or "obs" not in f.entries:
            raise MetabonkError(f"episode file {p} lacks 'obs'/'reward'; not written by EpisodeStore")
        try:
            meta = json.loads(f.metadata.get("meta", "{}"))
        except json.JSONDecodeError as e:
            raise MetabonkError(f"episode file {p} has corrupt metadata: {e}") from e
        self._files.append(p)
        self._lengths.append(int(f.shape("reward")[0]))
        self._keys.append(frozenset(f.keys()))
        self._meta.append(meta)

    # ---------------------------------------------------------------- properties
    def __len__(self) -> int:
        return len(self._files)

    @property
    def frame_size(self) -> int:
        return int(self.info["frame_size"])

    @property
    def num_actions(self) -> int | None:
        n = self.info.get("num_actions")
        return None if n is None else int(n)

    @property
    def env_spec(self) -> str:
        return str(self.info.get("env_spec", ""))

    @property
    def num_transitions(self) -> int:
        return int(sum(self._lengths))

    @property
    def lengths(self) -> list[int]:
        """Number of steps T of each episode."""
        return list(self._lengths)

    @property
    def has_actions(self) -> bool:
        """True when the store is non-empty and every episode holds true `action`s."""
        return len(self) > 0 and all("action" in k for k in self._keys)

    def episode_keys(self, i: int) -> frozenset[str]:
        return self._keys[self._check_index(i)]

    def labelled_fraction(self, key: str = "action_idm") -> float:
        """Fraction of episodes that hold `key` (e.g. IDM labels)."""
        return 0.0 if len(self) == 0 else sum(key in k for k in self._keys) / len(self)

    # ---------------------------------------------------------------- writing
    def append(self, episode: dict[str, np.ndarray], meta: dict[str, Any] | None = None) -> int:
        """Validate and durably write one finished episode; returns its index."""
        arrays = validate_episode(episode, self.frame_size, self.num_actions)
        T = int(arrays["reward"].shape[0])
        full_meta = {"length": T, "return": float(arrays["reward"].sum(dtype=np.float64)), **(meta or {})}
        try:
            meta_json = json.dumps(full_meta)
        except (TypeError, ValueError) as e:
            raise MetabonkError(f"episode meta must be JSON-serialisable: {e}") from e
        ep_dir = self.path / EPISODES_DIR
        index = len(self._files)
        try:
            tmp = write_safetensors_durable(ep_dir / f"ep_{index:06d}.safetensors", arrays, {"meta": meta_json})
        except MetabonkError as e:
            raise MetabonkError(f"{e} ({len(self)} episodes kept)") from e
        try:
            while True:  # link fails if another writer took this index: move on to the next free one
                final = ep_dir / f"ep_{index:06d}.safetensors"
                try:
                    os.link(tmp, final)
                    break
                except FileExistsError:
                    index += 1
                except OSError as e:  # no hard links on this filesystem: rename (single-writer safe)
                    if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                        raise
                    if final.exists():
                        index += 1
                        continue
                    os.replace(tmp, final)
                    break
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(ep_dir)
        if index == len(self._files):
            self._index_file(final)  # the common case: no directory listing per append
        else:
            self.refresh()  # other writers appended meanwhile
        return index

    def update_episode(self, i: int, new_arrays: dict[str, np.ndarray]) -> None:
        """Atomically rewrite episode `i` with extra/replaced per-step arrays (e.g. action_idm)."""
        i = self._check_index(i)
        current = self.episode(i)
        extra = validate_update(new_arrays, self._lengths[i], self.num_actions)
        arrays = {**current, **extra}
        meta_json = json.dumps(self._meta[i])
        tmp = write_safetensors_durable(self._files[i], arrays, {"meta": meta_json})
        self._handles.pop(i, None)
        os.replace(tmp, self._files[i])
        fsync_dir(self._files[i].parent)
        self._keys[i] = frozenset(arrays)

    # ---------------------------------------------------------------- reading
    def _check_index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise MetabonkError(f"episode index {i} out of range (store has {n} episodes)")
        return i % n

    def _handle(self, i: int) -> TensorFile:
        h = self._handles.get(i)
        if h is None:
            h = TensorFile(self._files[i])
            self._handles[i] = h
            if len(self._handles) > _MAX_OPEN:
                self._handles.popitem(last=False)
        else:
            self._handles.move_to_end(i)
        return h

    def episode(self, i: int, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """All arrays (or `keys`) of episode `i`, as writable in-memory copies."""
        i = self._check_index(i)
        h = self._handle(i)
        names = list(self._keys[i]) if keys is None else list(keys)
        missing = [k for k in names if k not in self._keys[i]]
        if missing:
            raise MetabonkError(f"episode {i} has no key(s) {missing} (it has {sorted(self._keys[i])})")
        return {k: np.array(h.array(k)) for k in names}

    def episode_meta(self, i: int) -> dict[str, Any]:
        return dict(self._meta[self._check_index(i)])

    def _gather(self, picks: Sequence[tuple[int, int]], T: int, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Copy windows (episode, start) straight from the memory maps into fresh batch arrays."""
        out: dict[str, np.ndarray] = {}
        for k in keys:
            e0 = picks[0][0]
            proto = self._handle(e0).array(k)
            per_frame = proto.shape[0] == self._lengths[e0] + 1
            n = T + 1 if per_frame else T
            buf = np.empty((len(picks), n, *proto.shape[1:]), proto.dtype)
            for b, (e, s) in enumerate(picks):
                src = self._handle(e).array(k)
                if src.shape[1:] != proto.shape[1:] or (src.shape[0] == self._lengths[e] + 1) != per_frame:
                    raise MetabonkError(
                        f"key '{k}' has shape {src.shape} in episode {e} but {proto.shape} in episode {e0}"
                    )
                buf[b] = src[s : s + n]
            out[k] = buf
        out["episode"] = np.array([e for e, _ in picks], dtype=np.int64)
        out["start"] = np.array([s for _, s in picks], dtype=np.int64)
        return out

    def eligible_episodes(
        self, T: int, keys: Sequence[str], episodes: Sequence[int] | None = None
    ) -> list[int]:
        """Episodes among `episodes` (default all) that hold every key and at least T steps."""
        pool = range(len(self)) if episodes is None else [self._check_index(int(e)) for e in episodes]
        need = set(keys)
        return [e for e in pool if self._lengths[e] >= T and need <= self._keys[e]]

    def _eligible_or_raise(self, T: int, keys: Sequence[str], episodes: Sequence[int] | None) -> list[int]:
        if T < 1:
            raise MetabonkError(f"window length T must be >= 1, got {T}")
        eps = self.eligible_episodes(T, keys, episodes)
        if not eps:
            raise MetabonkError(
                f"no episode in {self.path} has >= {T} steps and keys {list(keys)} "
                f"({len(self)} episodes, longest {max(self._lengths, default=0)} steps)"
            )
        return eps

    def sample_windows(
        self,
        batch: int,
        T: int,
        rng: np.random.Generator,
        keys: Sequence[str] = ("obs", "action"),
        episodes: Sequence[int] | None = None,
    ) -> dict[str, np.ndarray]:
        """`batch` random windows of T steps, uniform over all windows: obs [B,T+1,...], step keys [B,T]."""
        eps = self._eligible_or_raise(T, keys, episodes)
        counts = np.array([self._lengths[e] - T + 1 for e in eps], dtype=np.float64)
        picks = rng.choice(len(eps), size=batch, p=counts / counts.sum())
        starts = rng.integers(0, counts[picks].astype(np.int64))
        return self._gather([(eps[p], int(s)) for p, s in zip(picks, starts, strict=True)], T, keys)

    def iter_windows(
        self,
        T: int,
        stride: int | None = None,
        keys: Sequence[str] = ("obs", "action"),
        episodes: Sequence[int] | None = None,
        batch_size: int = 64,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Every window of T steps at `stride` (default T), in order, batched like sample_windows."""
        stride = T if stride is None else stride
        if stride < 1:
            raise MetabonkError(f"stride must be >= 1, got {stride}")
        if batch_size < 1:
            raise MetabonkError(f"batch_size must be >= 1, got {batch_size}")
        eps = self._eligible_or_raise(T, keys, episodes)
        todo = [(e, s) for e in eps for s in range(0, self._lengths[e] - T + 1, stride)]
        for b in range(0, len(todo), batch_size):
            yield self._gather(todo[b : b + batch_size], T, keys)

    def split(self, holdout_frac: float, seed: int = 0) -> tuple[list[int], list[int]]:
        """Split episode indices into (train, test) by episode; test gets round(frac*n), at least 1 if n>1."""
        if not 0.0 <= holdout_frac < 1.0:
            raise MetabonkError(f"holdout_frac must be in [0, 1), got {holdout_frac}")
        n = len(self)
        n_test = round(holdout_frac * n)
        if holdout_frac > 0 and n > 1:
            n_test = min(max(n_test, 1), n - 1)
        perm = np.random.default_rng(seed).permutation(n)
        return sorted(int(i) for i in perm[n_test:]), sorted(int(i) for i in perm[:n_test])

    def returns(self) -> list[float]:
        return [float(m.get("return", 0.0)) for m in self._meta]

    def close(self) -> None:
        self._handles.clear()

    def __getstate__(self) -> dict[str, Any]:
        """Pickles (e.g. into DataLoader workers) without memory maps; each process reopens lazily."""
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()
        return state


__all__ = ["STEP_KEYS", "EpisodeStore"]
