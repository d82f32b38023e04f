"""The FastAPI application: routes, size limits, metrics, the dashboard's static files, start-up and shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

import metabonk
from metabonk.serve.config import ServeConfig
from metabonk.serve.db import upgrade
from metabonk.serve.metrics import MetricsMiddleware
from metabonk.serve.routes import episodes, live, models, playbook, runs, workers
from metabonk.serve.security import SizeLimit
from metabonk.serve.services import Services

STATIC = Path(__file__).with_name("static")
CSP = ("default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; style-src 'self'; script-src 'self'; "
       "frame-ancestors 'none'")


def create_app(config: ServeConfig) -> FastAPI:
    """A ready app: the database is migrated and the stores reconciled before the first request."""
    svc = Services.build(config)
    upgrade(svc.db.engine)
    episodes.reconcile(svc)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        svc.broker.loop = asyncio.get_running_loop()
        yield
        svc.broker.loop = None
        svc.close()

    app = FastAPI(title="MetaBonk orchestrator", version=metabonk.__version__, lifespan=lifespan,
                  description="Workers, runs, episodes, the playbook and models of MetaBonk agents (docs/serve.md).")
    app.state.svc = svc

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes the input back, which cannot be JSON when it holds NaN / bytes: a 500
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)
    for module in (workers, runs, episodes, playbook, models, live):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-store"}
        return FileResponse(STATIC / "index.html", headers=headers)

    limits = [("/api/stores/", config.max_episode_bytes), ("/api/models/", config.max_model_bytes),
              ("/api/runs/", config.max_artifact_bytes)]
    app.add_middleware(SizeLimit, limits=limits, default=config.max_json_bytes)
    app.add_middleware(MetricsMiddleware, metrics=svc.metrics)
    return app


def run_server(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, **uvicorn_kw: Any) -> None:
    """Serve until interrupted (what `metabonk serve` runs)."""
    import uvicorn

    uvicorn.run(create_app(config), host=host, port=port, log_level=uvicorn_kw.pop("log_level", "warning"),
                ws_max_size=config.max_frame_bytes + 1024, ws_ping_timeout=60.0,
                timeout_keep_alive=uvicorn_kw.pop("timeout_keep_alive", 30), **uvicorn_kw)
