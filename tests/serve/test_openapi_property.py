"""Property-based API test: schemathesis drives the server from its own OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

from mlwarden.lineage import LineageStore  # noqa: E402
from mlwarden.pipeline import LocalExecutor, parse_spec  # noqa: E402
from mlwarden.serve import Deployment, build_server, close_server, create_app  # noqa: E402
from tests.serve.test_app import SPEC  # noqa: E402

KEYS: dict[str, str] = {}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The server's OpenAPI schema, bound to the running app."""
    root = tmp_path_factory.mktemp("openapi")
    store = LineageStore(root / "store")
    assert LocalExecutor(store).run(parse_spec(SPEC.replace("REPLACE_C", "1.0"))).status == (
        "completed"
    )
    deployment = Deployment.single(
        "phish@1", rate_limit={"rate_per_s": 1e6, "burst": 10**6}, shadow="phish@1"
    )
    g = build_server(store, deployment, serve_db=Path(root) / "serve.db")
    KEYS["admin"] = g.keys.create("admin", "schemathesis")
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(g))
    close_server(g)
    store.close()


def test_no_5xx_and_every_response_matches_the_schema(api: Any) -> None:
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/predict", "/v1/feedback", "/healthz"}
    headers = {"Authorization": f"Bearer {KEYS['admin']}"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def exercise(case: Any) -> None:
            case.call_and_validate(
                headers=headers, checks=[not_a_server_error, response_schema_conformance]
            )

        exercise()
