"""Result JSONs say which tree produced them: the commit, marked '-dirty' when files differed from HEAD
(results and run outputs aside), and the command."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from metabonk.common import results
from metabonk.common.results import git_commit, git_dirty, write_result


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_git_commit_says_when_the_tree_was_dirty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    _git(tmp_path, "add", "code.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # from a sub-folder too: the whole checkout counts
    clean = git_commit()
    assert not clean.endswith("-dirty") and git_dirty() is False
    write_result(tmp_path / "benchmarks" / "results" / "x.json", {"a": 1})  # a result does not dirty it
    assert git_dirty() is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit() == f"{clean}-dirty" and git_dirty() is True
    doc = json.loads((tmp_path / "benchmarks" / "results" / "x.json").read_text())
    assert doc["machine"]["git_commit"] == clean and doc["machine"]["git_dirty"] is False
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "new.py").write_text("y = 1\n")  # an untracked source file changes what ran
    assert git_dirty() is True


def test_outside_a_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert git_commit() == "unknown" and git_dirty() is None


def test_machine_names_the_cpu_model_and_the_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU 9000 @ 2.0GHz\nflags\t: fpu\n")
    real_path = results.Path
    monkeypatch.setattr(results, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    info = results.machine_info()
    assert info["cpu"] == "Example CPU 9000 @ 2.0GHz"
    assert isinstance(info["load_average_1min"], float) and info["load_average_1min"] >= 0
