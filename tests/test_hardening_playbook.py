"""The playbook store under misuse: read verbs never write, foreign or damaged databases are one line, commits
from two processes never collide."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from metabonk.common.errors import MetabonkError
from metabonk.planner.playbook import Entry, PlaybookStore
from tests.hardening_helpers import assert_one_line_error, run_cli


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _playbook(path: Path) -> Path:
    store = PlaybookStore(path)
    store.commit([Entry("e1", "kite the boss", ["boss"])], "first")
    store.close()
    return path


def test_read_verbs_leave_another_applications_database_untouched(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    before = _digest(other)
    for verb in (["history"], ["show"], ["diff", "0", "1"], ["revert", "0"]):
        code, text = run_cli(["playbook", *verb, "--db", str(other)])
        assert_one_line_error(code, text, "is not a playbook database")
    assert _digest(other) == before
    with pytest.raises(MetabonkError, match="not a playbook database"):
        PlaybookStore(other)  # a writer refuses it too
    assert _digest(other) == before


def test_reads_do_not_write_and_work_on_a_read_only_file(tmp_path: Path) -> None:
    db = _playbook(tmp_path / "pb.sqlite")
    before = _digest(db)
    os.chmod(db, stat.S_IRUSR)
    try:
        code, text = run_cli(["playbook", "history", "--db", str(db)])
        assert code == 0 and "v1" in text
        if os.geteuid() != 0:  # root writes through file modes
            code, text = run_cli(["playbook", "revert", "0", "--db", str(db)])
            assert_one_line_error(code, text, "playbook")
    finally:
        os.chmod(db, stat.S_IRUSR | stat.S_IWUSR)
    assert _digest(db) == before


def test_damaged_snapshot_and_huge_version_are_one_line(tmp_path: Path) -> None:
    db = _playbook(tmp_path / "pb.sqlite")
    code, text = run_cli(["playbook", "show", "99999999999999999999999", "--db", str(db)])
    assert_one_line_error(code, text, "Invalid value")
    with pytest.raises(MetabonkError, match="no version"):
        PlaybookStore(db, read_only=True).get(2**70)
    with sqlite3.connect(db) as c:
        c.execute("UPDATE versions SET snapshot='[{\"nope\": 1}]' WHERE version=1")
    code, text = run_cli(["playbook", "show", "1", "--db", str(db)])
    assert_one_line_error(code, text, "is damaged")


def _commit_many(path: str, worker: int) -> None:
    store = PlaybookStore(path)
    for i in range(15):
        store.commit([*store.entries(), Entry(f"w{worker}-{i}", "note")], f"worker {worker} note {i}")


def test_two_processes_committing_at_once_never_collide(tmp_path: Path) -> None:
    db = _playbook(tmp_path / "pb.sqlite")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_commit_many, args=(str(db), w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    store = PlaybookStore(db, read_only=True)
    reasons = {v.reason for v in store.history()}
    assert store.head == 31 and {f"worker {w} note {i}" for w in range(2) for i in range(15)} <= reasons
