"""The model registry: safetensors checkpoints (never pickle) in numbered versions, promotion, merge requests."""

from __future__ import annotations

import json
import threading
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse
from safetensors import SafetensorError, safe_open
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from metabonk.serve.db import MergeRequest, ModelVersion, now
from metabonk.serve.routes.episodes import SAFETENSORS_BODY
from metabonk.serve.schemas import ERRORS, NAME_PATTERN, MergeRequestIn, MergeRequestOut, MergeResolve, ModelVersionOut
from metabonk.serve.security import inside, require_read, require_write
from metabonk.serve.services import Services, services
from metabonk.serve.uploads import Received, move_into_place, receive_to_file

router = APIRouter(tags=["models"], responses=ERRORS)
ModelName = Path(pattern=NAME_PATTERN, max_length=64)
VersionNo = Path(ge=1, le=2**31 - 1)
_versions_lock = threading.Lock()


def _out(m: ModelVersion) -> ModelVersionOut:
    return ModelVersionOut(name=m.name, version=m.version, sha256=m.sha256, size=m.size, config=dict(m.config or {}),
                           note=m.note, promoted=m.promoted, created_at=m.created_at)


def _file(svc: Services, name: str, version: int) -> Any:
    return inside(svc.config.data / "models", name, f"v{version:06d}.safetensors")


def _header_config(got: Received) -> dict[str, Any]:
    """Parses the safetensors header (rejects anything else, pickles included) and returns its "config"."""
    try:
        with safe_open(str(got.path), framework="np") as f:
            header = f.metadata() or {}
            if not list(f.keys()):
                raise HTTPException(422, "the checkpoint holds no tensors")
    except (SafetensorError, ValueError, OSError) as e:
        raise HTTPException(422, f"the body is not a safetensors file: {e}") from e
    try:
        config = json.loads(header.get("config", "{}"))
    except json.JSONDecodeError as e:
        raise HTTPException(422, f"checkpoint metadata 'config' is not JSON: {e}") from e
    if not isinstance(config, dict):
        raise HTTPException(422, "checkpoint metadata 'config' must be a JSON object")
    return config


def _register(svc: Services, name: str, got: Received, note: str) -> ModelVersionOut:
    config = _header_config(got)
    with _versions_lock, svc.db.session() as s:
        version = int(s.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.name == name)) or 0) + 1
        move_into_place(got.path, _file(svc, name, version))
        m = ModelVersion(name=name, version=version, sha256=got.sha256, size=got.size, config=config, note=note,
                         promoted=False, created_at=now())
        s.add(m)
        s.flush()
        return _out(m)


@router.post("/api/models/{name}/versions", response_model=ModelVersionOut, dependencies=[Depends(require_write)],
             openapi_extra=SAFETENSORS_BODY)
async def upload_model(request: Request, name: str = ModelName, note: str = Query("", max_length=1000),
                       svc: Services = Depends(services)) -> ModelVersionOut:
    """Upload a checkpoint's model.safetensors (its config.json as the header key "config"): a new version."""
    got = await receive_to_file(request, svc.config.tmp, svc.config.max_model_bytes)
    try:
        out = await run_in_threadpool(_register, svc, name, got, note)
    finally:
        got.discard()
    svc.metrics.upload_bytes.labels("model").inc(got.size)
    svc.broker.publish("model", out.model_dump())
    return out


@router.get("/api/models", response_model=list[ModelVersionOut], dependencies=[Depends(require_read)])
def list_models(svc: Services = Depends(services)) -> list[ModelVersionOut]:
    """Every version of every model, newest first per model."""
    with svc.db.session() as s:
        rows = s.scalars(select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version.desc())).all()
        return [_out(m) for m in rows]


@router.get("/api/models/{name}/versions", response_model=list[ModelVersionOut], dependencies=[Depends(require_read)])
def list_versions(name: str = ModelName, svc: Services = Depends(services)) -> list[ModelVersionOut]:
    with svc.db.session() as s:
        rows = s.scalars(select(ModelVersion).where(ModelVersion.name == name).order_by(ModelVersion.version)).all()
        return [_out(m) for m in rows]


def _one(s: Session, name: str, version: int) -> ModelVersion:
    m = s.scalars(select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)).first()
    if m is None:
        raise HTTPException(404, f"model {name!r} has no version {version}")
    return m


@router.post("/api/models/{name}/versions/{version}/promote", response_model=ModelVersionOut,
             dependencies=[Depends(require_write)])
def promote(name: str = ModelName, version: int = VersionNo, svc: Services = Depends(services)) -> ModelVersionOut:
    """Make this version the one `download?which=promoted` serves (exactly one promoted version per model)."""
    with svc.db.session() as s:
        m = _one(s, name, version)
        s.execute(update(ModelVersion).where(ModelVersion.name == name).values(promoted=False))
        m.promoted = True
        s.flush()
        out = _out(m)
    svc.broker.publish("model", out.model_dump())
    return out


@router.get("/api/models/{name}/download", dependencies=[Depends(require_read)],
            responses={200: {"content": {"application/octet-stream": {}}}})
def download(name: str = ModelName, which: Literal["promoted", "latest"] = "promoted",
             version: int | None = Query(None, ge=1, le=2**31 - 1), svc: Services = Depends(services)) -> FileResponse:
    """A version's safetensors file: `version`, else the promoted one (or the latest with which=latest)."""
    with svc.db.session() as s:
        q = select(ModelVersion).where(ModelVersion.name == name)
        if version is not None:
            q = q.where(ModelVersion.version == version)
        elif which == "promoted":
            q = q.where(ModelVersion.promoted.is_(True))
        m = s.scalars(q.order_by(ModelVersion.version.desc())).first()
        if m is None:
            what = f"version {version}" if version else f"{which} version"
            raise HTTPException(404, f"model {name!r} has no {what}")
    path = _file(svc, name, m.version)
    if not path.is_file():
        raise HTTPException(404, f"model {name!r} v{m.version} is missing on disk")
    return FileResponse(path, media_type="application/octet-stream", filename=f"{name}-v{m.version}.safetensors",
                        headers={"X-Model-Version": str(m.version), "X-Model-Sha256": m.sha256})


def _mr(r: MergeRequest) -> MergeRequestOut:
    return MergeRequestOut(id=r.id, target=r.target, sources=list(r.sources), method=r.method, status=r.status,
                           result_version=r.result_version, note=r.note, created_at=r.created_at,
                           updated_at=r.updated_at)


@router.post("/api/merge-requests", response_model=MergeRequestOut, dependencies=[Depends(require_write)])
def open_merge(body: MergeRequestIn, svc: Services = Depends(services)) -> MergeRequestOut:
    """Ask for models to be merged into `target` (the hive merges and votes, then resolves the request)."""
    with svc.db.session() as s:
        for ref in body.sources:
            _one(s, ref.name, ref.version)
        t = now()
        r = MergeRequest(target=body.target, sources=[ref.model_dump() for ref in body.sources], method=body.method,
                         status="open", note=body.note, created_at=t, updated_at=t)
        s.add(r)
        s.flush()
        out = _mr(r)
    svc.broker.publish("merge", out.model_dump())
    return out


@router.get("/api/merge-requests", response_model=list[MergeRequestOut], dependencies=[Depends(require_read)])
def list_merges(status: Literal["open", "merged", "rejected"] | None = None,
                svc: Services = Depends(services)) -> list[MergeRequestOut]:
    with svc.db.session() as s:
        q = select(MergeRequest).order_by(MergeRequest.id.desc())
        if status is not None:
            q = q.where(MergeRequest.status == status)
        return [_mr(r) for r in s.scalars(q).all()]


@router.post("/api/merge-requests/{mr_id}/resolve", response_model=MergeRequestOut,
             dependencies=[Depends(require_write)])
def resolve_merge(body: MergeResolve, mr_id: int = Path(ge=1, le=2**31 - 1),
                  svc: Services = Depends(services)) -> MergeRequestOut:
    """Close a request: merged (naming the target's version that holds the merge) or rejected."""
    with svc.db.session() as s:
        r = s.get(MergeRequest, mr_id)
        if r is None:
            raise HTTPException(404, f"no merge request {mr_id}")
        if r.status != "open":
            raise HTTPException(409, f"merge request {mr_id} is already {r.status}")
        if body.status == "merged":
            if body.result_version is None:
                raise HTTPException(422, "a merged request names its result_version")
            _one(s, r.target, body.result_version)
        r.status, r.result_version, r.updated_at = body.status, body.result_version, now()
        r.note = body.note or r.note
        s.flush()
        out = _mr(r)
    svc.broker.publish("merge", out.model_dump())
    return out
