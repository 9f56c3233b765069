"""``GuardRun``: a failed guard is counted, then refuses (closed) or is recorded as failed open."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from mlwarden.errors import GuardError
from mlwarden.serve._guard_run import GuardRun
from mlwarden.serve._metrics import ServerMetrics


def _broken() -> str:
    raise ZeroDivisionError("the guard broke")


def _count(run: GuardRun, guard: str, outcome: str) -> float:
    value = run.metrics.registry.get_sample_value(
        "mlwarden_guard_errors_total", {"guard": guard, "outcome": outcome}
    )
    return value or 0.0


def test_a_closed_guard_refuses_with_its_name_and_the_cause() -> None:
    run = GuardRun(ServerMetrics())
    with pytest.raises(GuardError) as raised:
        run.run("drift", "closed", _broken, lambda _: "answered")
    assert raised.value.guard == "drift"
    assert isinstance(raised.value.__cause__, ZeroDivisionError)
    assert run.fail_open == [] and _count(run, "drift", "closed") == 1.0


def test_an_open_guard_answers_its_fallback_and_is_recorded() -> None:
    run = GuardRun(ServerMetrics())
    assert run.run("slowdown", "open", _broken, lambda exc: type(exc).__name__) == (
        "ZeroDivisionError"
    )
    assert run.run("drift", "open", lambda: "observed", lambda _: "fallback") == "observed"
    assert run.fail_open == ["slowdown"] and _count(run, "slowdown", "open") == 1.0


def test_a_guard_may_name_its_own_refusal() -> None:
    run = GuardRun(ServerMetrics())
    with pytest.raises(HTTPException) as raised:
        run.failed("decisions", "closed", refusal=HTTPException(503, "log stalled"))
    assert raised.value.status_code == 503
    run.failed("decisions", "open", refusal=HTTPException(503, "log stalled"))
    assert run.fail_open == ["decisions"]
