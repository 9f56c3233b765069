"""Property-based API test: schemathesis drives the default deployment from its own OpenAPI.

The deployment is the one users get (``Deployment.single``: burst 200, extraction guard
blocking, decision log failing closed); every response must be a declared status with a body
matching its declared schema, and never a 5xx, for valid requests and for invalid ones
(schemathesis's negative mode: wrong types, missing fields). Each generated case uses a fresh
admin key, so the extraction guard blocking one key (fuzzed rows look like a thief's) does not
hide the answering path from the rest. ``MLWARDEN_SCHEMATHESIS_EXAMPLES`` raises the examples per
operation for a longer run by hand (the CI default keeps the test to a few seconds).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    response_schema_conformance,
    status_code_conformance,
)

from mlwarden.lineage import LineageStore  # noqa: E402
from mlwarden.pipeline import LocalExecutor, parse_spec  # noqa: E402
from mlwarden.serve import Deployment, Guarded, build_server, close_server, create_app  # noqa: E402
from tests.serve.test_app import SPEC  # noqa: E402

EXAMPLES = int(os.environ.get("MLWARDEN_SCHEMATHESIS_EXAMPLES", "25"))
CASES: list[int] = []


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Guarded]]:
    """The server's OpenAPI schema bound to the running app, and the app's state."""
    root = tmp_path_factory.mktemp("openapi")
    store = LineageStore(root / "store")
    assert LocalExecutor(store).run(parse_spec(SPEC.replace("REPLACE_C", "1.0"))).status == (
        "completed"
    )
    deployment = Deployment.single("phish@1", shadow="phish@1")
    assert deployment.rate_limit.burst == 200 and deployment.guards.extraction.action == "block"
    g = build_server(store, deployment, serve_db=Path(root) / "serve.db")
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(g)), g
    close_server(g)
    store.close()


def test_no_5xx_and_every_response_is_declared_and_matches_its_schema(
    served: tuple[Any, Guarded],
) -> None:
    api, g = served
    operations = [result.ok() for result in api.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/predict", "/v1/feedback", "/healthz"}
    statuses: dict[int, int] = {}
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    for operation, mode in ((op, mode) for op in operations for mode in modes):

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def exercise(case: Any) -> None:
            key = g.keys.create("admin", "schemathesis")
            response = case.call(headers={"Authorization": f"Bearer {key}"})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            case.validate_response(
                response,
                checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
            )

        try:
            exercise()
        except Unsatisfiable:  # nothing to make invalid: no parameters, no body
            assert mode is GenerationMode.NEGATIVE
    CASES.append(sum(statuses.values()))
    print(
        f"schemathesis: {sum(statuses.values())} cases, statuses {dict(sorted(statuses.items()))}"
    )
    assert not any(code >= 500 for code in statuses)
    assert statuses.get(200, 0) > 0 and statuses.get(422, 0) > 0
