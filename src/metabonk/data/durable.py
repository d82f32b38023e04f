"""Durable file writes for the episode store: temp file + fsync, OS reasons in one line, stale temp cleanup."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import save_file

from metabonk.common.errors import MetabonkError


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)


TMP_RE = re.compile(r"^\..+\.tmp-(\d+)(-\d+)?$")


def os_reason(e: BaseException) -> str:
    """The OS reason inside an error (safetensors wraps it as `IoError(Os { ..., message: "..." })`)."""
    found = re.search(r'message: "([^"]+)"', str(e))
    return found.group(1) if found else (getattr(e, "strerror", None) or str(e))


def remove_stale_temps(folder: Path) -> None:
    """Delete temp files left by writers that died (SIGKILL); a live writer's temp file is kept."""
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        m = TMP_RE.match(p.name)
        if m is None:
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            p.unlink(missing_ok=True)
        except OSError:
            pass  # alive under another user: not ours to delete


def write_safetensors_durable(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str]) -> Path:
    """Write arrays to a temp file beside `path` and fsync it; returns the temp path (caller renames).
    A failure (full disk, read-only) removes the temp file and is a MetabonkError naming the OS reason."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o644)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except (OSError, SafetensorError) as e:
        tmp.unlink(missing_ok=True)
        raise MetabonkError(f"cannot write {path.name} in {path.parent}: {os_reason(e)}") from e
    return tmp
