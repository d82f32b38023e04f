"""Server-sent events: every write publishes a small event; `/api/events` streams them to dashboards.

Written by hand over StreamingResponse: SSE is a few lines of text framing, and this keeps sse-starlette
(an optional extra of the LLM server) out of the orchestrator's dependencies.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

KEEPALIVE_S = 15.0


class Broker:
    """Fan-out of events to subscribers' asyncio queues; `publish` may be called from any thread."""

    def __init__(self, keep: int = 256, queue_size: int = 1024) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._subs: set[asyncio.Queue[tuple[int, str, str]]] = set()
        self._recent: deque[tuple[int, str, str]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._next = 1
        self.queue_size = queue_size

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            item = (self._next, kind, json.dumps(data, default=str))
            self._next += 1
            self._recent.append(item)
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._deliver(item)
        else:
            loop.call_soon_threadsafe(self._deliver, item)

    def _deliver(self, item: tuple[int, str, str]) -> None:
        for q in list(self._subs):
            if q.full():  # a viewer too slow to keep up loses its oldest events, never blocks writers
                q.get_nowait()
            q.put_nowait(item)

    async def stream(self, last_id: int = 0) -> AsyncIterator[bytes]:
        q: asyncio.Queue[tuple[int, str, str]] = asyncio.Queue(self.queue_size)
        self._subs.add(q)
        try:
            yield b"retry: 2000\n\n"
            for item in [i for i in list(self._recent) if i[0] > last_id] if last_id else []:
                yield _frame(item)
            while True:
                try:
                    item = await asyncio.wait_for(q.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                yield _frame(item)
        finally:
            self._subs.discard(q)


def _frame(item: tuple[int, str, str]) -> bytes:
    n, kind, data = item
    return f"id: {n}\nevent: {kind}\ndata: {data}\n\n".encode()
