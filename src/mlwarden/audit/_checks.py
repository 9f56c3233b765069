"""The one registry of audit checks: each turns (model, data) into a pass/fail finding.

Later capabilities add checks with ``@register_check``; the pipeline spec names them by key and
their parameters are validated against the check's own pydantic model when the spec loads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlwarden.audit._metrics import MetricName, classification_metrics
from mlwarden.data import TableSchema
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
    """The result of one check: what was measured, against which threshold, and the cost."""

    check: str
    metric: str
    value: float | None  # None: could not be measured (and then the check failed)
    threshold: float
    comparison: Literal[">=", "<="]
    passed: bool
    message: str
    queries: int
    wall_time_s: float
    details: dict[str, Any] = {}

    @field_validator("value")
    @classmethod
    def _nan_is_unmeasured(cls, value: float | None) -> float | None:
        return None if value is not None and math.isnan(value) else value


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


def register_check(
    key: str, params: type[P]
) -> Callable[[Callable[[P, CheckContext], Finding]], Callable[[P, CheckContext], Finding]]:
    """Add a check to the registry under ``key`` with its parameter model."""

    def decorate(fn: Callable[[P, CheckContext], Finding]) -> Callable[[P, CheckContext], Finding]:
        if key in CHECKS:
            raise ValueError(f"check {key!r} is registered twice")
        summary = (fn.__doc__ or key).strip().splitlines()[0]
        CHECKS[key] = CheckDef(key=key, params=params, run=fn, summary=summary)
        return fn

    return decorate


def _compare(value: float | None, threshold: float, comparison: Literal[">=", "<="]) -> bool:
    if value is None or math.isnan(value):
        return False
    return value >= threshold if comparison == ">=" else value <= threshold


class PerformanceFloor(CheckParams):
    """Parameters of ``performance_floor``."""

    metric: MetricName = "f1"
    min: float = Field(ge=0.0, le=1.0)


@register_check("performance_floor", PerformanceFloor)
def performance_floor(params: PerformanceFloor, ctx: CheckContext) -> Finding:
    """Held-out performance must reach a floor: a model worse than this is not worth shipping."""
    start, before = time.perf_counter(), ctx.model.queries
    proba = ctx.model.predict_proba(ctx.X_test)
    scores = classification_metrics(ctx.y_test, proba, ctx.model.classes_, ctx.positive)
    value = scores.get(params.metric)
    passed = _compare(value, params.min, ">=")
    return Finding(
        check="performance_floor",
        metric=f"test_{params.metric}",
        value=value,
        threshold=params.min,
        comparison=">=",
        passed=passed,
        message=f"held-out {params.metric} {value:.4f} {'>=' if passed else '<'} {params.min}",
        queries=ctx.model.queries - before,
        wall_time_s=time.perf_counter() - start,
        details={"n_test": len(ctx.y_test)},
    )


class GeneralizationGap(CheckParams):
    """Parameters of ``generalization_gap``."""

    metric: MetricName = "accuracy"
    max_gap: float = Field(ge=0.0, le=1.0)


@register_check("generalization_gap", GeneralizationGap)
def generalization_gap(params: GeneralizationGap, ctx: CheckContext) -> Finding:
    """Train minus held-out score must stay small: a large gap means memorised training rows.

    Overfitting is what membership-inference attacks exploit (Shokri et al., S&P 2017), so the gap
    is a cheap first signal of privacy leakage as well as of poor generalisation.
    """
    start, before = time.perf_counter(), ctx.model.queries
    classes = ctx.model.classes_
    train = classification_metrics(
        ctx.y_train, ctx.model.predict_proba(ctx.X_train), classes, ctx.positive
    )
    test = classification_metrics(
        ctx.y_test, ctx.model.predict_proba(ctx.X_test), classes, ctx.positive
    )
    gap = train.get(params.metric) - test.get(params.metric)
    passed = _compare(gap, params.max_gap, "<=")
    return Finding(
        check="generalization_gap",
        metric=f"{params.metric}_gap",
        value=gap,
        threshold=params.max_gap,
        comparison="<=",
        passed=passed,
        message=f"train-test {params.metric} gap {gap:.4f} {'<=' if passed else '>'} "
        f"{params.max_gap}",
        queries=ctx.model.queries - before,
        wall_time_s=time.perf_counter() - start,
        details={"train": train.get(params.metric), "test": test.get(params.metric)},
    )


def run_check(key: str, params: dict[str, Any], ctx: CheckContext) -> Finding:
    """Validate ``params`` for check ``key`` and run it."""
    definition = CHECKS[key]
    return definition.run(definition.params.model_validate(params), ctx)
