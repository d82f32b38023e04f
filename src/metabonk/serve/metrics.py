"""Prometheus metrics of one orchestrator (its own registry, so several apps can live in one process)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("metabonk_http_requests", "HTTP requests", ["method", "route", "status"], registry=r)
        self.latency = Histogram("metabonk_http_request_seconds", "HTTP request latency", ["route"], registry=r,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.frames_in = Counter("metabonk_frames_received", "live frames pushed by workers", registry=r)
        self.frames_out = Counter("metabonk_frames_sent", "live frames sent to viewers", registry=r)
        self.episodes = Counter("metabonk_episodes", "episode uploads", ["result"], registry=r)
        self.upload_bytes = Counter("metabonk_upload_bytes", "bytes received in uploads", ["kind"], registry=r)
        self.workers = Gauge("metabonk_workers", "registered workers", ["state"], registry=r)
        self.viewers = Gauge("metabonk_frame_viewers", "open live-frame viewer sockets", registry=r)


class MetricsMiddleware:
    """ASGI middleware counting each HTTP request by its route template (not its raw path: bounded labels)."""

    def __init__(self, app: Any, metrics: ServeMetrics) -> None:
        self.app = app
        self.m = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(msg: Any) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.m.requests.labels(scope["method"], route, str(status)).inc()
            self.m.latency.labels(route).observe(time.perf_counter() - t0)
