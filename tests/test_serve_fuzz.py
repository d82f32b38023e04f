"""schemathesis over every non-streaming route of the orchestrator: no 5xx, and answers match the schema."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from metabonk.serve.app import create_app
from metabonk.serve.config import ServeConfig
from metabonk.serve.security import create_token

STREAMING = ("/api/events",)  # an endless SSE stream; WebSockets are not in the OpenAPI schema
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, status_code_conformance]
FAST = settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

# the schema must exist when tests are collected; the folder is removed when the interpreter exits
_DATA = tempfile.TemporaryDirectory(prefix="metabonk-fuzz-")
APP = create_app(ServeConfig(data=Path(_DATA.name) / "data", max_episode_bytes=1 << 20, max_model_bytes=1 << 20))
TOKEN = create_token(APP.state.svc.db)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(path=list(STREAMING))


@schema.parametrize()
@FAST
def test_no_server_errors_and_schema_conformance(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)


@pytest.mark.slow
@schema.parametrize()
@settings(FAST, max_examples=100, derandomize=False)
def test_fuzz_longer(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)
