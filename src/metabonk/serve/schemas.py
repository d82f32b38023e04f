"""The typed resources of the orchestrator's API (pydantic); FastAPI publishes them as its OpenAPI schema."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Names that become part of a path (stores, models, workers, artifacts): no '/', no leading '.'."""

Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Text = Annotated[str, Field(max_length=4000)]
Short = Annotated[str, Field(max_length=256)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- workers
class WorkerState(Strict):
    """What a worker is doing now: shown beside its live frames."""

    env: Short | None = None
    policy: Short | None = None
    intent: Short | None = None
    fps: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    step: Annotated[int, Field(ge=0)] | None = None
    episode: Annotated[int, Field(ge=0)] | None = None
    score: Finite | None = None
    cards: Annotated[list[Short], Field(max_length=32)] = []
    fallbacks: Annotated[int, Field(ge=0)] = 0
    note: Text = ""


class WorkerRegister(Strict):
    name: Name
    env: Short = ""
    policy: Short = ""
    host: Short = ""


class Heartbeat(Strict):
    state: WorkerState = WorkerState()


class WorkerOut(BaseModel):
    name: str
    env: str
    policy: str
    host: str
    registered_at: float
    last_seen: float
    state: dict[str, Any]
    stale: bool


# ---------------------------------------------------------------- runs
RunKind = Literal["demo", "train", "hive", "play", "bench", "other"]
StageStatus = Literal["pending", "running", "done", "failed", "skipped"]


class RunCreate(Strict):
    key: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
    """Chosen by the client (a uuid), so a retried create is the same run."""
    name: Short
    kind: RunKind = "other"
    config: dict[str, Any] = {}


class StageUpdate(Strict):
    name: Name
    status: StageStatus = "running"
    progress: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    message: Text = ""


class StageOut(BaseModel):
    name: str
    status: str
    progress: float
    message: str
    updated_at: float


class RunOut(BaseModel):
    key: str
    name: str
    kind: str
    status: str
    created_at: float
    updated_at: float
    config: dict[str, Any]
    progress: float
    stages: list[StageOut]


class RunFinish(Strict):
    status: Literal["done", "failed"] = "done"


class MetricIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    step: Annotated[int, Field(ge=0, le=2**31 - 1)]
    value: Finite
    t: Finite | None = None


class MetricBatch(Strict):
    points: Annotated[list[MetricIn], Field(max_length=10_000)]


class MetricSeries(BaseModel):
    name: str
    steps: list[int]
    values: list[float]


class ArtifactOut(BaseModel):
    name: str
    media_type: str
    size: int
    sha256: str
    created_at: float
    url: str


# ---------------------------------------------------------------- episodes
class StoreCreate(Strict):
    env_spec: Short
    num_actions: Annotated[int, Field(ge=1, le=1 << 20)] | None = None
    frame_size: Annotated[int, Field(ge=1, le=1024)] = 64


class StoreOut(BaseModel):
    name: str
    env_spec: str
    num_actions: int | None
    frame_size: int
    episodes: int


class EpisodeOut(BaseModel):
    store: str
    index: int
    upload_id: str
    length: int
    ret: float
    size: int
    sha256: str
    worker: str
    run_key: str
    created_at: float
    duplicate: bool = False


# ---------------------------------------------------------------- playbook
class EntryOut(BaseModel):
    id: str
    text: str
    tags: list[str]
    helpful: int
    harmful: int


class VersionOut(BaseModel):
    version: int
    created_utc: str
    reason: str
    diff: str
    entries: list[EntryOut]


class VersionSummary(BaseModel):
    version: int
    created_utc: str
    reason: str
    entries: int


class DiffOut(BaseModel):
    a: int
    b: int
    diff: str


class RevertIn(Strict):
    version: Annotated[int, Field(ge=0, le=2**31 - 1)]
    reason: Short | None = None


class EpisodeStatsIn(Strict):
    """An episode's outcome (`metabonk.planner.reflect.EpisodeStats`)."""

    seed: Annotated[int, Field(ge=0, le=2**31 - 1)]
    survived_s: Annotated[float, Field(ge=0, le=1e7, allow_inf_nan=False)]
    time_limit_s: Annotated[float, Field(gt=0, le=1e7, allow_inf_nan=False)]
    died: bool
    level: Annotated[int, Field(ge=0, le=10_000)]
    kills: Annotated[int, Field(ge=0)] = 0
    damage_taken: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    picks: Annotated[list[Short], Field(max_length=256)] = []
    boss_spawned: Annotated[int, Field(ge=0)] = 0
    boss_killed: Annotated[int, Field(ge=0)] = 0
    route: Short = "rule"


class ReflectIn(Strict):
    stats: EpisodeStatsIn
    baseline: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.5


class ReflectOut(BaseModel):
    version: int
    lesson: str
    delta: float


# ---------------------------------------------------------------- models
class ModelVersionOut(BaseModel):
    name: str
    version: int
    sha256: str
    size: int
    config: dict[str, Any]
    note: str
    promoted: bool
    created_at: float


class ModelRef(Strict):
    name: Name
    version: Annotated[int, Field(ge=1, le=2**31 - 1)]


MergeMethod = Literal["ties", "dare", "ram", "task_arithmetic", "soup"]


class MergeRequestIn(Strict):
    target: Name
    sources: Annotated[list[ModelRef], Field(min_length=2, max_length=64)]
    method: MergeMethod = "ties"
    note: Text = ""


class MergeResolve(Strict):
    status: Literal["merged", "rejected"]
    result_version: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    note: Text = ""


class MergeRequestOut(BaseModel):
    id: int
    target: str
    sources: list[dict[str, Any]]
    method: str
    status: str
    result_version: int | None
    note: str
    created_at: float
    updated_at: float


class Health(BaseModel):
    status: str
    version: str
    database: str


class ErrorOut(BaseModel):
    detail: str | list[dict[str, Any]]


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": why}
    for code, why in ((400, "invalid name or body"), (401, "no valid token / not allowed to read"),
                      (404, "not found"), (409, "conflicts with what is stored"),
                      (413, "request body over the limit"), (422, "failed validation"))
}
"""The error answers every route may give (published in the OpenAPI schema)."""

