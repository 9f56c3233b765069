"""The one registry of audit checks: each turns (model, data) into a pass/fail finding.

Later capabilities add checks with ``@register_check``; the pipeline spec names them by key and
their parameters are validated against the check's own pydantic model when the spec loads.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from mlwarden.audit._stats import Verdict
from mlwarden.data import TableSchema
from mlwarden.errors import ParameterError
from mlwarden.models import ModelAdapter

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class CheckContext:
    """What a check may look at: the model (through its adapter) and the labelled splits."""

    model: ModelAdapter
    X_train: pd.DataFrame
    y_train: pd.Series
    X_test: pd.DataFrame
    y_test: pd.Series
    positive: Any | None
    schema: TableSchema | None = None
    seed: int = 0


class Finding(BaseModel):
    """The result of one check: what was measured, on how many points, against which threshold.

    ``verdict`` is three-valued: ``inconclusive`` when the 95% ``interval`` straddles the
    threshold (too few points to decide); ``passed`` is ``verdict == "pass"``. ``n`` is the
    sample size the value was measured on (None where it is not a sample statistic).
    ``queries`` and ``wall_time_s`` are what the check cost; a registered check gets them filled
    in by ``register_check``, which measures every call.
    """

    check: str
    metric: str
    value: float | None  # None: could not be measured (and then the check failed)
    threshold: float
    comparison: Literal[">=", "<="]
    verdict: Verdict = "fail"  # a check that gives only ``passed`` gets its verdict from it
    passed: bool = False
    n: int | None = None
    interval: tuple[float, float] | None = None
    message: str
    queries: int = 0
    wall_time_s: float = 0.0
    details: dict[str, Any] = {}

    @field_validator("value")
    @classmethod
    def _nan_is_unmeasured(cls, value: float | None) -> float | None:
        return None if value is not None and math.isnan(value) else value

    @model_validator(mode="before")
    @classmethod
    def _verdict_and_passed_agree(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "verdict" not in data and "passed" in data:  # a finding of an older report
                data["verdict"] = "pass" if data["passed"] else "fail"
            data["passed"] = data.get("verdict") == "pass"
        return data

    @property
    def shown(self) -> str:
        """The value with its interval, for a table cell."""
        if self.value is None:
            return "n/a"
        text = f"{self.value:.4f}"
        if self.interval is not None:
            text += f" [{self.interval[0]:.4f}, {self.interval[1]:.4f}]"
        return text


class CheckParams(BaseModel):
    """Base of every check's parameter model: unknown keys are spec errors."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


P = TypeVar("P", bound=CheckParams)
CheckFn = Callable[[Any, CheckContext], Finding]


@dataclass(frozen=True)
class CheckDef:
    """A registered check: its key, parameter model and function."""

    key: str
    params: type[CheckParams]
    run: CheckFn
    summary: str


CHECKS: dict[str, CheckDef] = {}


def _measured(fn: Callable[[P, CheckContext], Finding]) -> Callable[[P, CheckContext], Finding]:
    """``fn`` with its finding's ``queries`` and ``wall_time_s`` measured around the call."""

    @functools.wraps(fn)
    def run(params: P, ctx: CheckContext) -> Finding:
        start, before = time.perf_counter(), ctx.model.queries
        finding = fn(params, ctx)
        cost = {"queries": ctx.model.queries - before, "wall_time_s": time.perf_counter() - start}
        return finding.model_copy(update=cost)

    return run


def register_check(
    key: str, params: type[P]
) -> Callable[[Callable[[P, CheckContext], Finding]], Callable[[P, CheckContext], Finding]]:
    """Add a check to the registry under ``key`` with its parameter model.

    The check returns its finding without its cost: the registered function measures the
    queries it sends through ``ctx.model`` and its wall time, once for every check.
    """

    def decorate(fn: Callable[[P, CheckContext], Finding]) -> Callable[[P, CheckContext], Finding]:
        if key in CHECKS:
            raise ParameterError(f"check {key!r} is registered twice")
        summary = (fn.__doc__ or key).strip().splitlines()[0]
        measured = _measured(fn)
        CHECKS[key] = CheckDef(key=key, params=params, run=measured, summary=summary)
        return measured

    return decorate


#: How a message says a verdict, against the threshold named after it.
VERDICT_WORDS: dict[Verdict, str] = {
    "pass": "within",
    "fail": "FAILS",
    "inconclusive": "INCONCLUSIVE (the interval straddles)",
}


def span(interval: tuple[float, float] | None) -> str:
    """`` [low, high]`` for a message, or nothing."""
    return "" if interval is None else f" [95% CI {interval[0]:.4f}, {interval[1]:.4f}]"


def run_check(key: str, params: dict[str, Any], ctx: CheckContext) -> Finding:
    """Validate ``params`` for check ``key`` and run it."""
    definition = CHECKS[key]
    return definition.run(definition.params.model_validate(params), ctx)
