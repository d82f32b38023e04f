"""Workers: register, heartbeat with their current state; stale ones (no heartbeat lately) are marked."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Path
from fastapi.responses import Response
from sqlalchemy import select

from metabonk.serve.db import Worker, now
from metabonk.serve.schemas import ERRORS, NAME_PATTERN, Heartbeat, WorkerOut, WorkerRegister
from metabonk.serve.security import require_read, require_write
from metabonk.serve.services import Services, services

router = APIRouter(prefix="/api/workers", tags=["workers"], responses=ERRORS)
WorkerName = Path(pattern=NAME_PATTERN, max_length=64)


def _out(w: Worker, stale_after_s: float) -> WorkerOut:
    return WorkerOut(name=w.name, env=w.env, policy=w.policy, host=w.host, registered_at=w.registered_at,
                     last_seen=w.last_seen, state=dict(w.state or {}), stale=now() - w.last_seen > stale_after_s)


@router.post("", response_model=WorkerOut, dependencies=[Depends(require_write)])
def register(body: WorkerRegister, svc: Services = Depends(services)) -> WorkerOut:
    """Register a worker (again): a known name keeps its row and refreshes what it runs."""
    t = now()
    with svc.db.session() as s:
        w = s.scalars(select(Worker).where(Worker.name == body.name)).first()
        if w is None:
            w = Worker(name=body.name, registered_at=t, state={})
            s.add(w)
        w.env, w.policy, w.host, w.last_seen = body.env, body.policy, body.host, t
        s.flush()
        out = _out(w, svc.config.stale_after_s)
    svc.broker.publish("worker", out.model_dump())
    return out


@router.post("/{name}/heartbeat", response_model=WorkerOut, dependencies=[Depends(require_write)])
def heartbeat(body: Heartbeat, name: str = WorkerName, svc: Services = Depends(services)) -> WorkerOut:
    with svc.db.session() as s:
        w = s.scalars(select(Worker).where(Worker.name == name)).first()
        if w is None:
            raise HTTPException(404, f"no worker {name!r}: register it first (POST /api/workers)")
        w.last_seen = now()
        w.state = body.state.model_dump(exclude_none=True)
        out = _out(w, svc.config.stale_after_s)
    svc.broker.publish("worker", out.model_dump())
    return out


@router.get("", response_model=list[WorkerOut], dependencies=[Depends(require_read)])
def list_workers(svc: Services = Depends(services)) -> list[WorkerOut]:
    with svc.db.session() as s:
        rows = s.scalars(select(Worker).order_by(Worker.name)).all()
        out = [_out(w, svc.config.stale_after_s) for w in rows]
    return out


@router.get("/{name}", response_model=WorkerOut, dependencies=[Depends(require_read)])
def get_worker(name: str = WorkerName, svc: Services = Depends(services)) -> WorkerOut:
    with svc.db.session() as s:
        w = s.scalars(select(Worker).where(Worker.name == name)).first()
        if w is None:
            raise HTTPException(404, f"no worker {name!r}")
        return _out(w, svc.config.stale_after_s)


@router.get("/{name}/frame.jpg", dependencies=[Depends(require_read)],
            responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "no frame yet"}})
def latest_frame(name: str = WorkerName, svc: Services = Depends(services)) -> Response:
    """The newest live frame a worker pushed (a snapshot; the stream is the WebSocket /ws/workers/NAME/view)."""
    jpeg = svc.hub.latest(name)
    if jpeg is None:
        raise HTTPException(404, f"no frame from worker {name!r} yet")
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
