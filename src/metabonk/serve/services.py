"""What every route needs, built once per app: config, database, tokens, events, frames, stores, playbook."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import HTTPException, Request

from metabonk.data.store import EpisodeStore
from metabonk.planner.playbook import PlaybookStore
from metabonk.serve.config import ServeConfig
from metabonk.serve.db import Database
from metabonk.serve.events import Broker
from metabonk.serve.frames import FrameHub
from metabonk.serve.metrics import ServeMetrics
from metabonk.serve.security import TokenChecker, inside


@dataclass
class Services:
    config: ServeConfig
    db: Database
    tokens: TokenChecker
    broker: Broker = field(default_factory=Broker)
    hub: FrameHub = field(default_factory=FrameHub)
    metrics: ServeMetrics = field(default_factory=ServeMetrics)
    _stores: dict[str, EpisodeStore] = field(default_factory=dict)
    _store_locks: dict[str, threading.Lock] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _playbook: PlaybookStore | None = None
    playbook_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, config: ServeConfig) -> Services:
        config.data.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(config.tmp, ignore_errors=True)  # part files of uploads cut off by a crash
        config.tmp.mkdir()
        db = Database(config.url)
        return cls(config=config, db=db, tokens=TokenChecker(db))

    # ---- episode stores under DATA/stores/<name>
    @property
    def stores_root(self) -> Path:
        return self.config.data / "stores"

    def store_path(self, name: str) -> Path:
        return inside(self.stores_root, name)

    def store(self, name: str) -> EpisodeStore:
        with self._lock:
            st = self._stores.get(name)
            if st is None:
                path = self.store_path(name)
                if not (path / "store.json").is_file():
                    raise HTTPException(404, f"no episode store {name!r} (create it with PUT /api/stores/{name})")
                st = self._stores[name] = EpisodeStore.open(path)
                self._store_locks.setdefault(name, threading.Lock())
            return st

    @contextmanager
    def store_locked(self, name: str) -> Iterator[EpisodeStore]:
        st = self.store(name)
        with self._store_locks[name]:
            yield st

    def forget_store(self, name: str) -> None:
        with self._lock:
            self._stores.pop(name, None)

    # ---- the ACE playbook at DATA/playbook.sqlite
    @property
    def playbook(self) -> PlaybookStore:
        with self._lock:
            if self._playbook is None:
                self._playbook = PlaybookStore(self.config.data / "playbook.sqlite")
            return self._playbook

    def close(self) -> None:
        """Release files and connections (they reopen on next use: a test client may start the app again)."""
        with self._lock:
            if self._playbook is not None:
                self._playbook.close()
                self._playbook = None
            for st in self._stores.values():
                st.close()
            self._stores.clear()
        self.db.close()


def services(request: Request) -> Services:
    return request.app.state.svc
