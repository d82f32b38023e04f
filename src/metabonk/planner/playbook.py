"""The ACE strategy playbook: entries with helpful/harmful counts, versioned in SQLite (see docs/adr/0002).

Every change is a new version holding the full snapshot, its diff against the previous version and the
reason; reverting to version V writes a new version whose content equals V (history is never rewritten).
Readers can open the file read-only (nothing is created or written); a database of another application is
refused; commits from several processes are serialised by an immediate SQLite transaction.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from metabonk.common.errors import MetabonkError

DEFAULT_DB = Path("runs/planner/playbook.sqlite")
MAX_VERSION = 2**63 - 1
_TABLES = {"versions": {"version", "created_utc", "reason", "diff", "snapshot"}, "meta": {"key", "value"}}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    version INTEGER PRIMARY KEY,
    created_utc TEXT NOT NULL,
    reason TEXT NOT NULL,
    diff TEXT NOT NULL,
    snapshot TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reflections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_utc TEXT NOT NULL,
    episode TEXT NOT NULL,
    text TEXT NOT NULL,
    tags TEXT NOT NULL
);
"""


@dataclass
class Entry:
    """One strategy bullet. `tags` say what it is about (e.g. 'card:armor', 'intent:kite', 'boss')."""

    id: str
    text: str
    tags: list[str] = field(default_factory=list)
    helpful: int = 0
    harmful: int = 0

    @property
    def score(self) -> int:
        return self.helpful - self.harmful

    def render(self) -> str:
        tags = ",".join(self.tags)
        return f"[{self.id}] (+{self.helpful}/-{self.harmful}) {{{tags}}} {self.text}"


@dataclass
class Version:
    """A stored playbook version."""

    version: int
    created_utc: str
    reason: str
    diff: str
    entries: list[Entry]


def render(entries: Iterable[Entry]) -> str:
    """The playbook as text, one entry per line (what diffs are computed on)."""
    return "\n".join(e.render() for e in entries)


def text_diff(old: list[Entry], new: list[Entry], a: str = "a", b: str = "b") -> str:
    """Unified line diff between two entry lists."""
    lines = difflib.unified_diff(render(old).splitlines(), render(new).splitlines(), a, b, lineterm="", n=0)
    return "\n".join(lines)


class PlaybookStore:
    """SQLite-backed versioned playbook. Version 0 is the empty playbook; each commit adds one version."""

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        self.path = Path(path)
        memory = self.path == Path(":memory:")
        try:
            if read_only:
                if not self.path.is_file():
                    raise MetabonkError(f"no playbook database at {self.path}")
                self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                           check_same_thread=False, timeout=30.0, isolation_level=None)
                self._check_is_playbook(require=True)
                return
            if not memory:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30.0,
                                       isolation_level=None)
            self._check_is_playbook(require=False)
            with self._write():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                if self._db.execute("SELECT COUNT(*) FROM versions").fetchone()[0] == 0:
                    self._db.execute("INSERT INTO versions VALUES (0, ?, 'empty playbook', '', '[]')", (_now(),))
                    self._db.execute("INSERT OR REPLACE INTO meta VALUES ('next_id', '1')")
        except sqlite3.DatabaseError as e:
            raise MetabonkError(f"{self.path} is not a usable playbook database: {e}") from e

    def _check_is_playbook(self, require: bool) -> None:
        """Refuse another application's database: its tables are never touched. An empty file is fine (new)."""
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables and not require:
            return
        for name, columns in _TABLES.items():
            found = {r[1] for r in self._db.execute(f"PRAGMA table_info({name})")}
            if not columns <= found:
                self._db.close()
                raise MetabonkError(f"{self.path} is not a playbook database (no '{name}' table of a playbook); "
                                    f"pass --db PATH of a playbook")

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One immediate transaction: a second writer waits (up to 30 s) instead of racing for the version."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise MetabonkError(f"cannot write the playbook {self.path}: {e}") from e
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        try:
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as e:
            raise MetabonkError(f"cannot write the playbook {self.path}: {e}") from e

    def close(self) -> None:
        self._db.close()

    # ---- reading
    @property
    def head(self) -> int:
        return int(self._db.execute("SELECT MAX(version) FROM versions").fetchone()[0])

    def entries(self, version: int | None = None) -> list[Entry]:
        return self.get(self.head if version is None else version).entries

    def get(self, version: int) -> Version:
        row = None
        if 0 <= int(version) <= MAX_VERSION:
            row = self._db.execute(
                "SELECT version, created_utc, reason, diff, snapshot FROM versions WHERE version=?",
                (int(version),),
            ).fetchone()
        if row is None:
            raise MetabonkError(f"playbook {self.path} has no version {version} (head is {self.head})")
        try:
            entries = [Entry(**d) for d in json.loads(row[4])]
        except (TypeError, ValueError) as e:
            raise MetabonkError(f"version {version} of the playbook {self.path} is damaged: {e}") from e
        return Version(int(row[0]), row[1], row[2], row[3], entries)

    def history(self) -> list[Version]:
        rows = self._db.execute("SELECT version FROM versions ORDER BY version").fetchall()
        return [self.get(r[0]) for r in rows]

    def diff(self, a: int, b: int) -> str:
        return text_diff(self.get(a).entries, self.get(b).entries, f"v{a}", f"v{b}")

    # ---- writing
    def new_id(self) -> str:
        """A fresh entry id, never reused even after deletes and reverts."""
        with self._write():
            n = int(self._db.execute("SELECT value FROM meta WHERE key='next_id'").fetchone()[0])
            self._db.execute("UPDATE meta SET value=? WHERE key='next_id'", (str(n + 1),))
        return f"e{n}"

    def commit(self, entries: list[Entry], reason: str) -> int:
        """Store `entries` as a new version (returns it); an unchanged playbook returns the head unchanged."""
        if not reason.strip():
            raise MetabonkError("every playbook change needs a reason")
        ids = [e.id for e in entries]
        if len(set(ids)) != len(ids):
            raise MetabonkError(f"duplicate playbook entry ids: {ids}")
        with self._write():  # head read and insert in one transaction: concurrent committers queue up
            head = self.head
            old = self.entries(head)
            if [dataclasses.asdict(e) for e in old] == [dataclasses.asdict(e) for e in entries]:
                return head
            diff = text_diff(old, entries, f"v{head}", f"v{head + 1}")
            snapshot = json.dumps([dataclasses.asdict(e) for e in entries])
            self._db.execute(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?)", (head + 1, _now(), reason, diff, snapshot)
            )
        return head + 1

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._write():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def add_reflection(self, text: str, tags: list[str], episode: str = "") -> int:
        """Keep a Reflexion note (episodic memory, retrieved beside playbook entries)."""
        with self._write():
            cur = self._db.execute(
                "INSERT INTO reflections (created_utc, episode, text, tags) VALUES (?, ?, ?, ?)",
                (_now(), episode, text, json.dumps(tags)),
            )
        return int(cur.lastrowid or 0)

    def reflections(self, last: int | None = None) -> list[Entry]:
        """Stored reflections (newest last) as entries with ids 'r<N>'."""
        rows = self._db.execute("SELECT id, text, tags FROM reflections ORDER BY id").fetchall()
        out = [Entry(id=f"r{r[0]}", text=r[1], tags=json.loads(r[2])) for r in rows]
        return out[-last:] if last else out

    def revert(self, version: int, reason: str | None = None) -> int:
        """Restore the content of `version` as a new head version."""
        target = self.get(version)
        return self.commit(
            [dataclasses.replace(e, tags=list(e.tags)) for e in target.entries],
            reason or f"revert to v{version}",
        )


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
