"""Streamed request bodies: written chunk by chunk to a part file under DATA/tmp, hashed on the way.

The part file is moved into place only after the whole body arrived and was validated; a dropped
connection deletes it, and a killed server leaves it in DATA/tmp, which start-up empties.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException, Request
from starlette.requests import ClientDisconnect


@dataclass
class Received:
    path: Path
    size: int
    sha256: str

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


async def receive_to_file(request: Request, tmp_dir: Path, limit: int) -> Received:
    """The request body as a fsynced part file; 413 past `limit`, 400 when empty or cut off."""
    path = tmp_dir / f"upload-{uuid.uuid4().hex}.part"
    h = hashlib.sha256()
    size = 0
    try:
        with open(path, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, f"request body over the limit of {limit} bytes")
                h.update(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
    except ClientDisconnect as e:
        path.unlink(missing_ok=True)
        raise HTTPException(400, "upload cut off before its end") from e
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise HTTPException(400, "empty request body")
    return Received(path, size, h.hexdigest())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move_into_place(part: Path, final: Path) -> None:
    """Atomic rename of a finished part file to its final name (same filesystem: both under DATA)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, final)
    fsync_dir(final.parent)
