"""Streaming routes: server-sent events, live frames over WebSockets, Prometheus /metrics and health."""

from __future__ import annotations

import asyncio
import re

from fastapi import APIRouter, Depends, Header, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import select, text

import metabonk
from metabonk.serve.db import Worker, now
from metabonk.serve.frames import is_jpeg
from metabonk.serve.schemas import ERRORS, NAME_PATTERN, Health
from metabonk.serve.security import bearer, may_read, require_read
from metabonk.serve.services import Services, services

router = APIRouter(tags=["live"], responses=ERRORS)
_NAME = re.compile(NAME_PATTERN)


@router.get("/api/events", dependencies=[Depends(require_read)],
            responses={200: {"content": {"text/event-stream": {}}}})
async def events(request: Request, last_event_id: int = Header(0, ge=0),
                 svc: Services = Depends(services)) -> StreamingResponse:
    """Server-sent events: worker, run, metrics, artifact, episode, playbook, model and merge updates."""
    return StreamingResponse(svc.broker.stream(last_event_id), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.websocket("/ws/workers/{name}/frames")
async def push_frames(ws: WebSocket, name: str) -> None:
    """A worker's frame stream: each binary message is one JPEG (a token is needed, as for any write)."""
    svc: Services = ws.app.state.svc
    if not _NAME.match(name) or not svc.tokens.valid(bearer(ws)):
        await ws.close(code=1008, reason="a valid token and worker name are needed")
        return
    await ws.accept()
    try:
        while True:
            data = await ws.receive_bytes()
            if len(data) > svc.config.max_frame_bytes or not is_jpeg(data):
                await ws.close(code=1003, reason="frames must be JPEG under the size limit")
                return
            await svc.hub.put(name, data)
            svc.metrics.frames_in.inc()
    except (WebSocketDisconnect, KeyError, RuntimeError):
        return  # the worker went away (KeyError/RuntimeError: a text or close message instead of bytes)


@router.websocket("/ws/workers/{name}/view")
async def view_frames(ws: WebSocket, name: str) -> None:
    """A viewer's stream of one worker's frames: the newest frame each time one arrives (slow viewers skip)."""
    svc: Services = ws.app.state.svc
    if not _NAME.match(name) or not may_read(ws):
        await ws.close(code=1008, reason="reads from other hosts need a token")
        return
    await ws.accept()
    svc.metrics.viewers.inc()
    closed = asyncio.create_task(_wait_closed(ws))
    seq = 0
    try:
        while not closed.done():
            got = await svc.hub.next(name, seq, timeout=1.0)
            if got is None:
                continue
            seq, jpeg = got
            await ws.send_bytes(jpeg)
            svc.hub.sent += 1
            svc.metrics.frames_out.inc()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        closed.cancel()
        svc.metrics.viewers.dec()


async def _wait_closed(ws: WebSocket) -> None:
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
    except (WebSocketDisconnect, RuntimeError):
        return


@router.get("/metrics", dependencies=[Depends(require_read)], responses={200: {"content": {"text/plain": {}}}})
def metrics(svc: Services = Depends(services)) -> Response:
    """Prometheus exposition: request counts and latency, frames in/out, uploads, workers by health."""
    with svc.db.session() as s:
        seen = list(s.scalars(select(Worker.last_seen)))
    stale = sum(1 for t in seen if now() - t > svc.config.stale_after_s)
    svc.metrics.workers.labels("active").set(len(seen) - stale)
    svc.metrics.workers.labels("stale").set(stale)
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/health", response_model=Health)
def health(svc: Services = Depends(services)) -> Health:
    with svc.db.session() as s:
        s.execute(text("SELECT 1"))
    return Health(status="ok", version=getattr(metabonk, "__version__", "0.1.0"), database=svc.db.engine.dialect.name)
