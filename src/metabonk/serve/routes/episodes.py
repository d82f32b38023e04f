"""Episodes: streamed, validated, size-limited uploads into named episode stores; listing and download.

The store's files are the truth and the `episodes` table is their index. An upload is appended to the store
(which writes it atomically, metadata inside the same file) and then indexed; each carries the client's
`upload_id`, so a retry of an upload that did land is answered with the stored episode, not a second copy,
and `reconcile` re-indexes at start-up anything a crash left between the two steps.
"""

from __future__ import annotations

import json
from pathlib import Path as FsPath
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse
from safetensors import SafetensorError, safe_open
from sqlalchemy import delete, func, select
from starlette.concurrency import run_in_threadpool

from metabonk.common.errors import MetabonkError
from metabonk.data.store import EpisodeStore
from metabonk.serve.db import Episode, now
from metabonk.serve.schemas import ERRORS, NAME_PATTERN, EpisodeOut, StoreCreate, StoreOut
from metabonk.serve.security import require_read, require_write
from metabonk.serve.services import Services, services
from metabonk.serve.uploads import Received, receive_to_file

router = APIRouter(prefix="/api/stores", tags=["episodes"], responses=ERRORS)
StoreName = Path(pattern=NAME_PATTERN, max_length=64)
UPLOAD_ID = r"^[A-Za-z0-9_-]{8,64}$"
SAFETENSORS_BODY = {"requestBody": {"required": True, "content": {"application/octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}}


def _store_out(name: str, st: EpisodeStore) -> StoreOut:
    return StoreOut(name=name, env_spec=st.env_spec, num_actions=st.num_actions, frame_size=st.frame_size,
                    episodes=len(st))


def _ep_out(e: Episode, duplicate: bool = False) -> EpisodeOut:
    return EpisodeOut(store=e.store, index=e.index, upload_id=e.upload_id, length=e.length, ret=e.ret, size=e.size,
                      sha256=e.sha256, worker=e.worker, run_key=e.run_key, created_at=e.created_at,
                      duplicate=duplicate)


@router.put("/{name}", response_model=StoreOut, dependencies=[Depends(require_write)])
def create_store(body: StoreCreate, name: str = StoreName, svc: Services = Depends(services)) -> StoreOut:
    """Create a store (or return the same one: creating it again with equal settings is a no-op)."""
    path = svc.store_path(name)
    try:
        st = EpisodeStore.create(path, body.env_spec, body.num_actions, body.frame_size, exist_ok=True)
    except MetabonkError as e:
        raise HTTPException(409, str(e)) from e
    if st.num_actions != body.num_actions:
        raise HTTPException(409, f"store {name!r} has num_actions {st.num_actions}, not {body.num_actions}")
    svc.forget_store(name)
    return _store_out(name, svc.store(name))


@router.get("", response_model=list[StoreOut], dependencies=[Depends(require_read)])
def list_stores(svc: Services = Depends(services)) -> list[StoreOut]:
    root = svc.stores_root
    names = sorted(p.name for p in root.iterdir() if (p / "store.json").is_file()) if root.is_dir() else []
    return [_store_out(n, svc.store(n)) for n in names]


@router.get("/{name}", response_model=StoreOut, dependencies=[Depends(require_read)])
def get_store(name: str = StoreName, svc: Services = Depends(services)) -> StoreOut:
    return _store_out(name, svc.store(name))


@router.post("/{name}/episodes", response_model=EpisodeOut, dependencies=[Depends(require_write)],
             openapi_extra=SAFETENSORS_BODY)
async def upload_episode(request: Request, name: str = StoreName,
                         upload_id: str = Query(..., pattern=UPLOAD_ID),
                         worker: str = Query("", pattern=r"^[A-Za-z0-9_.-]{0,64}$"),
                         run: str = Query("", pattern=r"^[A-Za-z0-9_-]{0,64}$"),
                         svc: Services = Depends(services)) -> EpisodeOut:
    """Upload one episode: the body is a safetensors file of the store's arrays (obs, action, reward, ...),
    its JSON metadata under the header key "meta". Nothing is stored unless the whole body arrived and passed
    the store's checks."""
    svc.store(name)  # 404 before reading a body for a store that is not there
    got = await receive_to_file(request, svc.config.tmp, svc.config.max_episode_bytes)
    try:
        out = await run_in_threadpool(_ingest, svc, name, got, upload_id, worker, run)
    finally:
        got.discard()
    svc.metrics.upload_bytes.labels("episode").inc(got.size)
    svc.metrics.episodes.labels("duplicate" if out.duplicate else "accepted").inc()
    if not out.duplicate:
        svc.broker.publish("episode", out.model_dump())
    return out


def _read_upload(got: Received) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    try:
        with safe_open(str(got.path), framework="np") as f:
            header = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, ValueError, TypeError, OSError) as e:
        raise HTTPException(422, f"the body is not a readable safetensors episode: {e}") from e
    try:
        meta = json.loads(header.get("meta", "{}"))
    except json.JSONDecodeError as e:
        raise HTTPException(422, f"episode metadata 'meta' is not JSON: {e}") from e
    if not isinstance(meta, dict):
        raise HTTPException(422, "episode metadata 'meta' must be a JSON object")
    return arrays, meta


def _ingest(svc: Services, name: str, got: Received, upload_id: str, worker: str, run: str) -> EpisodeOut:
    arrays, meta = _read_upload(got)
    with svc.store_locked(name) as st:
        with svc.db.session() as s:
            row = s.scalars(select(Episode).where(Episode.upload_id == upload_id)).first()
            if row is not None:
                if row.store != name:
                    raise HTTPException(409, f"upload {upload_id} already went to store {row.store!r}")
                return _ep_out(row, duplicate=True)
        known = _uploads(st).get(upload_id)
        duplicate = known is not None
        if known is None:
            meta = {**meta, "upload_id": upload_id, "upload_sha256": got.sha256, "upload_size": got.size,
                    "worker": worker, "run": run}
            try:
                known = st.append(arrays, meta)
            except MetabonkError as e:
                raise HTTPException(422, f"episode rejected: {e}") from e
        with svc.db.session() as s:  # reached again after a crash between the two steps: index it now
            row = _index_row(name, st, known)
            s.add(row)
            s.flush()
            return _ep_out(row, duplicate=duplicate)


def _uploads(st: EpisodeStore) -> dict[str, int]:
    return {str(m["upload_id"]): i for i in range(len(st)) if "upload_id" in (m := st.episode_meta(i))}


def _index_row(name: str, st: EpisodeStore, i: int) -> Episode:
    m = st.episode_meta(i)
    return Episode(store=name, index=i, upload_id=str(m.get("upload_id") or f"local-{name}-{i}")[:64],
                   length=int(m.get("length", st.lengths[i])), ret=float(m.get("return", 0.0)),
                   size=int(m.get("upload_size", 0)), sha256=str(m.get("upload_sha256", "")),
                   worker=str(m.get("worker", ""))[:64], run_key=str(m.get("run", ""))[:64], created_at=now())


def reconcile(svc: Services) -> dict[str, int]:
    """Make the index match the stores after a crash: index unindexed episodes, drop rows with no episode."""
    added = dropped = 0
    root = svc.stores_root
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if not (path / "store.json").is_file():
            continue
        st = svc.store(path.name)
        with svc.store_locked(path.name), svc.db.session() as s:
            have = set(s.scalars(select(Episode.index).where(Episode.store == path.name)))
            for i in range(len(st)):
                if i not in have:
                    s.add(_index_row(path.name, st, i))
                    added += 1
            gone = s.execute(delete(Episode).where(Episode.store == path.name, Episode.index >= len(st)))
            dropped += int(getattr(gone, "rowcount", 0) or 0)
    return {"indexed": added, "dropped": dropped}


@router.get("/{name}/episodes", response_model=list[EpisodeOut], dependencies=[Depends(require_read)])
def list_episodes(name: str = StoreName, offset: int = Query(0, ge=0, le=2**31 - 1),
                  limit: int = Query(100, ge=1, le=1000), svc: Services = Depends(services)) -> list[EpisodeOut]:
    svc.store(name)
    with svc.db.session() as s:
        rows = s.scalars(select(Episode).where(Episode.store == name).order_by(Episode.index)
                         .offset(offset).limit(limit)).all()
        return [_ep_out(r) for r in rows]


@router.get("/{name}/count", response_model=dict[str, int], dependencies=[Depends(require_read)])
def count_episodes(name: str = StoreName, svc: Services = Depends(services)) -> dict[str, int]:
    st = svc.store(name)
    with svc.db.session() as s:
        n = s.scalar(select(func.count()).select_from(Episode).where(Episode.store == name)) or 0
    return {"indexed": int(n), "in_store": len(st)}


@router.get("/{name}/episodes/{index}", dependencies=[Depends(require_read)],
            responses={200: {"content": {"application/octet-stream": {}}}})
def download_episode(name: str = StoreName, index: int = Path(ge=0, le=10**9),
                     svc: Services = Depends(services)) -> FileResponse:
    """The episode's safetensors file, as the store holds it."""
    st = svc.store(name)
    if index >= len(st):
        raise HTTPException(404, f"store {name!r} has {len(st)} episodes; no index {index}")
    path: FsPath = svc.store_path(name) / "episodes" / f"ep_{index:06d}.safetensors"
    if not path.is_file():
        raise HTTPException(404, f"episode {index} of {name!r} is missing on disk")
    return FileResponse(path, media_type="application/octet-stream", filename=f"{name}-{index:06d}.safetensors")
