"""Checkpoints under misuse: an --out over the user's files, failed swaps, tampered configs and weights, modes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch

from metabonk.common import checkpoint
from metabonk.common.checkpoint import check_out_dir, load_trainer_state
from metabonk.common.errors import MetabonkError
from metabonk.latent.idm import IDMConfig, InverseDynamicsModel
from tests.hardening_helpers import run_cli


def _user_files(root: Path) -> dict[str, bytes]:
    """A directory of 21 entries a user would be upset to lose: 20 files and a folder with one inside."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(20):
        (root / f"notes{i}.txt").write_text(f"note {i}")
    (root / "photos").mkdir()
    (root / "photos" / "cat.jpg").write_bytes(b"\xff\xd8cat")
    return _snapshot(root)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _idm() -> InverseDynamicsModel:
    return InverseDynamicsModel(IDMConfig(width=8))


@pytest.mark.parametrize("out", [".", ".."])
def test_train_out_dot_or_dotdot_is_refused_and_nothing_is_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                out: str) -> None:
    work = tmp_path / "home" / "me"
    before = _user_files(tmp_path / "home")
    work.mkdir()
    monkeypatch.chdir(work)
    code, err = run_cli(["train", "idm", "--data", "S", "--out", out, "--steps", "2"])
    assert code == 2 and "current directory or one above it" in err and "Traceback" not in err
    assert _snapshot(tmp_path / "home") == before
    # the writer itself refuses too (a library caller that skips the CLI check)
    with pytest.raises(MetabonkError, match="current directory"):
        _idm().save(out)
    assert _snapshot(tmp_path / "home") == before and sorted(os.listdir(tmp_path / "home")) == sorted(
        ["me", "photos", *[f"notes{i}.txt" for i in range(20)]])


def test_out_that_holds_the_data_or_foreign_files_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "proj" / "store"
    data.mkdir(parents=True)
    with pytest.raises(MetabonkError, match="contains the input"):
        check_out_dir(tmp_path / "proj", data)
    before = _user_files(tmp_path / "docs")
    with pytest.raises(MetabonkError, match="not a MetaBonk checkpoint"):
        check_out_dir(tmp_path / "docs")
    (tmp_path / "file").write_text("x")
    with pytest.raises(MetabonkError, match="not a directory"):
        check_out_dir(tmp_path / "file")
    assert _snapshot(tmp_path / "docs") == before
    # allowed: new, empty, a checkpoint (resume, also in place as --init), one with only its TensorBoard logs
    ckpt = _idm().save(tmp_path / "ckpt")
    (tmp_path / "logs_only" / "tb").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    for ok in ("new", "empty", "ckpt", "logs_only"):
        check_out_dir(tmp_path / ok, data)
    check_out_dir(ckpt, ckpt)


def test_failed_swap_puts_every_user_entry_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = _idm().save(tmp_path / "ckpt")
    (ckpt / "tb").mkdir()
    (ckpt / "tb" / "events").write_text("logs")
    (ckpt / "report.md").write_text("report")
    before = _snapshot(ckpt)
    real_rename = os.rename

    def failing_rename(src: str | Path, dst: str | Path) -> None:
        if Path(src).resolve() == ckpt.resolve():  # the moment the old dir would be swapped out
            raise OSError(28, "No space left on device")
        real_rename(src, dst)

    monkeypatch.setattr(checkpoint.os, "rename", failing_rename)
    with pytest.raises(OSError):
        _idm().save(ckpt)
    monkeypatch.setattr(checkpoint.os, "rename", real_rename)
    assert _snapshot(ckpt) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp dir left behind
    # a writer that fails half way leaves the old checkpoint and its neighbours as they were
    def broken(tmp: Path) -> None:
        (tmp / checkpoint.WEIGHTS).write_bytes(b"partial")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        checkpoint._atomic_dir_write(ckpt, broken)
    assert _snapshot(ckpt) == before
    # and a successful save keeps the neighbours, replacing only its own files
    _idm().save(ckpt)
    assert (ckpt / "tb" / "events").read_text() == "logs" and (ckpt / "report.md").read_text() == "report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_checkpoint_modes_follow_the_umask_and_an_existing_dir_keeps_its_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        ckpt = _idm().save(tmp_path / "a")
        assert stat.S_IMODE(ckpt.stat().st_mode) == 0o755
        assert {stat.S_IMODE(p.stat().st_mode) for p in ckpt.iterdir()} == {0o644}
        os.chmod(ckpt, 0o750)
        _idm().save(ckpt)
        assert stat.S_IMODE(ckpt.stat().st_mode) == 0o750
    finally:
        os.umask(old)


def _tamper(ckpt: Path, change) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps(change(doc)))


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: {**d, "config": None}, "no 'config' object"),
    (lambda d: {**d, "config": [1, 2]}, "no 'config' object"),
    (lambda d: {k: v for k, v in d.items() if k != "config"}, "no 'config' object"),
    (lambda d: {**d, "kind": "lam"}, "holds a 'lam' model, expected 'idm'"),
    (lambda d: [d], "not a MetaBonk checkpoint config"),
    (lambda d: {**d, "config": {**d["config"], "width": 16}}, "the weights hold"),
    (lambda d: {**d, "config": {**d["config"], "width": 10**9}}, "far larger than its weights"),
    (lambda d: {**d, "config": {**d["config"], "width": "wide"}}, "does not describe a valid 'idm' model"),
])
def test_tampered_config_is_one_clear_error(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    ckpt = _idm().save(tmp_path / "idm")
    _tamper(ckpt, change)
    with pytest.raises(MetabonkError, match=message):
        InverseDynamicsModel.load(ckpt)
    code, err = run_cli(["eval", "idm", str(ckpt), "--data", str(tmp_path / "none")])
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_truncated_weights_and_a_pickled_trainer_state_are_refused(tmp_path: Path) -> None:
    ckpt = _idm().save(tmp_path / "idm", trainer_state={"step": 3})
    assert load_trainer_state(ckpt) == {"step": 3}
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(MetabonkError, match="truncated or not a safetensors file"):
        InverseDynamicsModel.load(ckpt)
    torch.save({"evil": Path("x")}, ckpt / "trainer.pt")  # an arbitrary class: needs the unsafe unpickler
    with pytest.raises(MetabonkError, match="delete it") as e:
        load_trainer_state(ckpt)
    assert "weights_only=False" not in str(e.value)
    (ckpt / "trainer.pt").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(MetabonkError, match="damaged"):
        load_trainer_state(ckpt)
