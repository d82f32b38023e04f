"""schemathesis over every non-streaming route of the orchestrator: no 5xx, and answers match the schema."""

from __future__ import annotations

from typing import Any

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


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    app = create_app(ServeConfig(data=data, max_episode_bytes=1 << 20, max_model_bytes=1 << 20))
    return app, create_token(app.state.svc.db)


@pytest.fixture(scope="module")
def api_schema(served: tuple[Any, str]) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", served[0]).exclude(path=list(STREAMING))


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@FAST
def test_no_server_errors_and_schema_conformance(case: schemathesis.Case, served: tuple[Any, str]) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {served[1]}"}, checks=CHECKS)


@pytest.mark.slow
@schema.parametrize()
@settings(FAST, max_examples=100, derandomize=False)
def test_fuzz_longer(case: schemathesis.Case, served: tuple[Any, str]) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {served[1]}"}, checks=CHECKS)
