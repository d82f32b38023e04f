"""The ACE playbook over HTTP: show, history, diff, revert, and reflect on an episode's stats.

All of it is `metabonk.planner.playbook.PlaybookStore` (versions, diffs, reverts as new versions) and
`metabonk.planner.reflect` (template reflector + curator); this module only types and guards it.
"""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from metabonk.common.errors import MetabonkError
from metabonk.planner.playbook import Version
from metabonk.serve.schemas import (
    ERRORS,
    DiffOut,
    EntryOut,
    ReflectIn,
    ReflectOut,
    RevertIn,
    VersionOut,
    VersionSummary,
)
from metabonk.serve.security import require_read, require_write
from metabonk.serve.services import Services, services

router = APIRouter(prefix="/api/playbook", tags=["playbook"], responses=ERRORS)
VersionNo = Path(ge=0, le=2**31 - 1)


def _version(v: Version) -> VersionOut:
    return VersionOut(version=v.version, created_utc=v.created_utc, reason=v.reason, diff=v.diff,
                      entries=[EntryOut(**dataclasses.asdict(e)) for e in v.entries])


def _get(svc: Services, version: int | None) -> VersionOut:
    with svc.playbook_lock:
        pb = svc.playbook
        try:
            return _version(pb.get(pb.head if version is None else version))
        except MetabonkError as e:
            raise HTTPException(404, str(e)) from e


@router.get("", response_model=VersionOut, dependencies=[Depends(require_read)])
def show(svc: Services = Depends(services)) -> VersionOut:
    """The head version (its entries, and its diff against the one before)."""
    return _get(svc, None)


@router.get("/versions", response_model=list[VersionSummary], dependencies=[Depends(require_read)])
def history(svc: Services = Depends(services)) -> list[VersionSummary]:
    with svc.playbook_lock:
        return [VersionSummary(version=v.version, created_utc=v.created_utc, reason=v.reason, entries=len(v.entries))
                for v in svc.playbook.history()]


@router.get("/versions/{version}", response_model=VersionOut, dependencies=[Depends(require_read)])
def get_version(version: int = VersionNo, svc: Services = Depends(services)) -> VersionOut:
    return _get(svc, version)


@router.get("/diff", response_model=DiffOut, dependencies=[Depends(require_read)])
def diff(a: int = Query(ge=0, le=2**31 - 1), b: int = Query(ge=0, le=2**31 - 1),
         svc: Services = Depends(services)) -> DiffOut:
    with svc.playbook_lock:
        try:
            return DiffOut(a=a, b=b, diff=svc.playbook.diff(a, b))
        except MetabonkError as e:
            raise HTTPException(404, str(e)) from e


@router.post("/revert", response_model=VersionOut, dependencies=[Depends(require_write)])
def revert(body: RevertIn, svc: Services = Depends(services)) -> VersionOut:
    """Restore version V's content as a new head version (history is never rewritten)."""
    with svc.playbook_lock:
        pb = svc.playbook
        try:
            head = pb.revert(body.version, body.reason)
        except MetabonkError as e:
            raise HTTPException(404, str(e)) from e
        out = _version(pb.get(head))
    svc.broker.publish("playbook", {"version": out.version, "reason": out.reason})
    return out


@router.post("/reflect", response_model=ReflectOut, dependencies=[Depends(require_write)])
def reflect(body: ReflectIn, svc: Services = Depends(services)) -> ReflectOut:
    """Ingest one episode's stats: the template reflector writes the lesson, the curator commits the edits."""
    from metabonk.planner.reflect import Curator, EpisodeStats, Reflector  # imports the Arena game (torch): late

    stats = EpisodeStats(**body.stats.model_dump())
    with svc.playbook_lock:
        lesson = Reflector(None).reflect(stats, body.baseline)
        version = Curator(svc.playbook).update(stats, lesson)
    svc.broker.publish("playbook", {"version": version, "reason": "reflect"})
    return ReflectOut(version=version, lesson=lesson.text, delta=lesson.delta)
