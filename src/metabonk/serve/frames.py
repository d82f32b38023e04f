"""Live frames: workers push JPEGs over a WebSocket, viewers get the newest one of each worker.

A viewer slower than the worker skips frames rather than falling behind: the hub keeps only the latest
frame per worker and wakes viewers when it changes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass
class Slot:
    seq: int = 0
    jpeg: bytes = b""
    t: float = 0.0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


class FrameHub:
    """The latest frame of each worker; lives on the server's event loop."""

    def __init__(self, max_workers: int = 4096) -> None:
        self.slots: dict[str, Slot] = {}
        self.max_workers = max_workers
        self.received = 0
        self.sent = 0

    def slot(self, worker: str) -> Slot:
        s = self.slots.get(worker)
        if s is None:
            if len(self.slots) >= self.max_workers:
                raise ValueError("too many workers streaming frames")
            s = self.slots[worker] = Slot()
        return s

    async def put(self, worker: str, jpeg: bytes) -> None:
        s = self.slot(worker)
        async with s.changed:
            s.seq += 1
            s.jpeg, s.t = jpeg, time.time()
            s.changed.notify_all()
        self.received += 1

    async def next(self, worker: str, after: int, timeout: float = 10.0) -> tuple[int, bytes] | None:
        """The first frame newer than `after` (waits up to `timeout`; None if nothing came)."""
        s = self.slot(worker)
        async with s.changed:
            if s.seq <= after:
                try:
                    await asyncio.wait_for(s.changed.wait_for(lambda: s.seq > after), timeout)
                except TimeoutError:
                    return None
            return s.seq, s.jpeg

    def latest(self, worker: str) -> bytes | None:
        s = self.slots.get(worker)
        return s.jpeg if s is not None and s.seq else None


def is_jpeg(data: bytes) -> bool:
    return data.startswith(JPEG_MAGIC) and len(data) > 4
