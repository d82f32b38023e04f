"""Runs: a demo / train / hive run reports stages, progress, metric time series and artifacts."""

from __future__ import annotations

import mimetypes

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from metabonk.serve.db import Artifact, MetricPoint, Run, Stage, now
from metabonk.serve.schemas import (
    ERRORS,
    NAME_PATTERN,
    ArtifactOut,
    MetricBatch,
    MetricSeries,
    RunCreate,
    RunFinish,
    RunOut,
    StageOut,
    StageUpdate,
)
from metabonk.serve.security import inside, require_read, require_write
from metabonk.serve.services import Services, services
from metabonk.serve.uploads import move_into_place, receive_to_file

router = APIRouter(prefix="/api/runs", tags=["runs"], responses=ERRORS)
RunKey = Path(pattern=r"^[A-Za-z0-9_-]{8,64}$")
ArtifactName = Path(pattern=NAME_PATTERN, max_length=64)
ARTIFACT_TYPES = {".md": "text/markdown", ".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg",
                  ".jpeg": "image/jpeg", ".json": "application/json", ".txt": "text/plain", ".csv": "text/csv"}


def _run(s: Session, key: str) -> Run:
    run = s.scalars(select(Run).where(Run.key == key)).first()
    if run is None:
        raise HTTPException(404, f"no run {key!r}")
    return run


def _out(s: Session, run: Run) -> RunOut:
    stages = s.scalars(select(Stage).where(Stage.run_id == run.id).order_by(Stage.position)).all()
    progress = sum(1.0 if st.status in ("done", "skipped") else st.progress for st in stages) / max(len(stages), 1)
    if run.status == "done":
        progress = 1.0
    return RunOut(key=run.key, name=run.name, kind=run.kind, status=run.status, created_at=run.created_at,
                  updated_at=run.updated_at, config=dict(run.config or {}), progress=progress,
                  stages=[StageOut(name=st.name, status=st.status, progress=st.progress, message=st.message,
                                   updated_at=st.updated_at) for st in stages])


@router.post("", response_model=RunOut, dependencies=[Depends(require_write)])
def create_run(body: RunCreate, svc: Services = Depends(services)) -> RunOut:
    """Create a run under the client's key; creating the same key again returns the existing run."""
    t = now()
    with svc.db.session() as s:
        svc.db.insert_ignore(s, Run, [dict(key=body.key, name=body.name, kind=body.kind, status="running",
                                           created_at=t, updated_at=t, config=body.config)], ["key"])
        out = _out(s, _run(s, body.key))
    svc.broker.publish("run", out.model_dump())
    return out


@router.get("", response_model=list[RunOut], dependencies=[Depends(require_read)])
def list_runs(limit: int = Query(50, ge=1, le=500), svc: Services = Depends(services)) -> list[RunOut]:
    with svc.db.session() as s:
        runs = s.scalars(select(Run).order_by(Run.created_at.desc(), Run.id.desc()).limit(limit)).all()
        return [_out(s, r) for r in runs]


@router.get("/{key}", response_model=RunOut, dependencies=[Depends(require_read)])
def get_run(key: str = RunKey, svc: Services = Depends(services)) -> RunOut:
    with svc.db.session() as s:
        return _out(s, _run(s, key))


@router.post("/{key}/stages", response_model=RunOut, dependencies=[Depends(require_write)])
def update_stage(body: StageUpdate, key: str = RunKey, svc: Services = Depends(services)) -> RunOut:
    """Create or update one stage (stages keep the order in which they were first reported)."""
    t = now()
    with svc.db.session() as s:
        run = _run(s, key)
        st = s.scalars(select(Stage).where(Stage.run_id == run.id, Stage.name == body.name)).first()
        if st is None:
            pos = s.scalar(select(func.count()).select_from(Stage).where(Stage.run_id == run.id)) or 0
            st = Stage(run_id=run.id, position=int(pos), name=body.name)
            s.add(st)
        st.status, st.progress, st.message, st.updated_at = body.status, body.progress, body.message, t
        run.updated_at = t
        if body.status == "failed":
            run.status = "failed"
        s.flush()
        out = _out(s, run)
    svc.broker.publish("run", out.model_dump())
    return out


@router.post("/{key}/finish", response_model=RunOut, dependencies=[Depends(require_write)])
def finish_run(body: RunFinish, key: str = RunKey, svc: Services = Depends(services)) -> RunOut:
    with svc.db.session() as s:
        run = _run(s, key)
        run.status, run.updated_at = body.status, now()
        s.flush()
        out = _out(s, run)
    svc.broker.publish("run", out.model_dump())
    return out


@router.post("/{key}/metrics", response_model=dict[str, int], dependencies=[Depends(require_write)])
def add_metrics(body: MetricBatch, key: str = RunKey, svc: Services = Depends(services)) -> dict[str, int]:
    """Append metric points; a point already stored (same name and step) is kept, not duplicated."""
    t = now()
    with svc.db.session() as s:
        run = _run(s, key)
        rows = {(p.name, p.step): dict(run_id=run.id, name=p.name, step=p.step, value=p.value,
                                       t=t if p.t is None else p.t) for p in body.points}
        svc.db.insert_ignore(s, MetricPoint, list(rows.values()), ["run_id", "name", "step"])
        run.updated_at = t
    last: dict[str, list[float]] = {}
    for p in body.points:
        last[p.name] = [p.step, p.value]
    svc.broker.publish("metrics", {"run": key, "points": [[k, *v] for k, v in last.items()]})
    return {"accepted": len(rows)}


@router.get("/{key}/metrics", response_model=list[MetricSeries], dependencies=[Depends(require_read)])
def get_metrics(key: str = RunKey, name: str | None = Query(None, max_length=128),
                svc: Services = Depends(services)) -> list[MetricSeries]:
    """Every metric's time series (or one, by name), in step order."""
    with svc.db.session() as s:
        run = _run(s, key)
        q = select(MetricPoint.name, MetricPoint.step, MetricPoint.value).where(MetricPoint.run_id == run.id)
        if name is not None:
            q = q.where(MetricPoint.name == name)
        series: dict[str, MetricSeries] = {}
        for n, step, value in s.execute(q.order_by(MetricPoint.name, MetricPoint.step)):
            ms = series.setdefault(n, MetricSeries(name=n, steps=[], values=[]))
            ms.steps.append(step)
            ms.values.append(value)
    return list(series.values())


def _artifact_out(key: str, a: Artifact) -> ArtifactOut:
    return ArtifactOut(name=a.name, media_type=a.media_type, size=a.size, sha256=a.sha256, created_at=a.created_at,
                       url=f"/api/runs/{key}/artifacts/{a.name}")


@router.put("/{key}/artifacts/{name}", response_model=ArtifactOut, dependencies=[Depends(require_write)],
            openapi_extra={"requestBody": {"required": True,
                                           "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                             "format": "binary"}}}}})
async def put_artifact(request: Request, key: str = RunKey, name: str = ArtifactName,
                       svc: Services = Depends(services)) -> ArtifactOut:
    """Upload (or replace) an artifact: report.md, PNG, GIF, JSON; the body is the file."""
    ext = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext not in ARTIFACT_TYPES:
        raise HTTPException(400, f"artifact type {ext or name!r} not accepted (one of {sorted(ARTIFACT_TYPES)})")
    with svc.db.session() as s:
        run_id = _run(s, key).id
    final = inside(svc.config.data / "runs", key, name)
    got = await receive_to_file(request, svc.config.tmp, svc.config.max_artifact_bytes)
    move_into_place(got.path, final)
    svc.metrics.upload_bytes.labels("artifact").inc(got.size)
    with svc.db.session() as s:
        a = s.scalars(select(Artifact).where(Artifact.run_id == run_id, Artifact.name == name)).first()
        if a is None:
            a = Artifact(run_id=run_id, name=name)
            s.add(a)
        a.media_type, a.size, a.sha256, a.created_at = ARTIFACT_TYPES[ext], got.size, got.sha256, now()
        s.flush()
        out = _artifact_out(key, a)
    svc.broker.publish("artifact", {"run": key, **out.model_dump()})
    return out


@router.get("/{key}/artifacts", response_model=list[ArtifactOut], dependencies=[Depends(require_read)])
def list_artifacts(key: str = RunKey, svc: Services = Depends(services)) -> list[ArtifactOut]:
    with svc.db.session() as s:
        run = _run(s, key)
        rows = s.scalars(select(Artifact).where(Artifact.run_id == run.id).order_by(Artifact.name)).all()
        return [_artifact_out(key, a) for a in rows]


@router.get("/{key}/artifacts/{name}", dependencies=[Depends(require_read)],
            responses={200: {"content": {"application/octet-stream": {}}}})
def get_artifact(key: str = RunKey, name: str = ArtifactName, svc: Services = Depends(services)) -> FileResponse:
    with svc.db.session() as s:
        run = _run(s, key)
        a = s.scalars(select(Artifact).where(Artifact.run_id == run.id, Artifact.name == name)).first()
        if a is None:
            raise HTTPException(404, f"run {key!r} has no artifact {name!r}")
    path = inside(svc.config.data / "runs", key, name)
    if not path.is_file():
        raise HTTPException(404, f"artifact {name!r} is missing on disk")
    media = a.media_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media, headers={"X-Content-Type-Options": "nosniff"})
