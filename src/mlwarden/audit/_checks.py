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

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlwarden.audit._metrics import MetricName, metric_value
from mlwarden.audit._stats import Verdict, bootstrap_interval, decide
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
    """The result of one check: what was measured, on how many points, against which threshold.

    ``verdict`` is three-valued: ``inconclusive`` when the 95% ``interval`` straddles the
    threshold (too few points to decide); ``passed`` is ``verdict == "pass"``. ``n`` is the
    sample size the value was measured on (None where it is not a sample statistic).
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
    queries: int
    wall_time_s: float
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


#: How a message says a verdict, against the threshold named after it.
VERDICT_WORDS: dict[Verdict, str] = {
    "pass": "within",
    "fail": "FAILS",
    "inconclusive": "INCONCLUSIVE (the interval straddles)",
}


def span(interval: tuple[float, float] | None) -> str:
    """`` [low, high]`` for a message, or nothing."""
    return "" if interval is None else f" [95% CI {interval[0]:.4f}, {interval[1]:.4f}]"


class PerformanceFloor(CheckParams):
    """Parameters of ``performance_floor``."""

    metric: MetricName = "f1"
    min: float = Field(ge=0.0, le=1.0)


@register_check("performance_floor", PerformanceFloor)
def performance_floor(params: PerformanceFloor, ctx: CheckContext) -> Finding:
    """Held-out performance must reach a floor: a model worse than this is not worth shipping."""
    start, before = time.perf_counter(), ctx.model.queries
    proba = ctx.model.predict_proba(ctx.X_test)
    classes, y = ctx.model.classes_, ctx.y_test.to_numpy()
    value = metric_value(params.metric, y, proba, classes, ctx.positive)
    interval = bootstrap_interval(
        lambda i: metric_value(params.metric, y[i], proba[i], classes, ctx.positive),
        len(y), seed=ctx.seed,
    )  # fmt: skip
    verdict = decide(value, interval, params.min, ">=")
    return Finding(
        check="performance_floor",
        metric=f"test_{params.metric}",
        value=value,
        threshold=params.min,
        comparison=">=",
        verdict=verdict,
        n=len(y),
        interval=interval,
        message=f"held-out {params.metric} {value:.4f}{span(interval)} on {len(y):,} rows: "
        f"{VERDICT_WORDS[verdict]} the floor {params.min:g}",
        queries=ctx.model.queries - before,
        wall_time_s=time.perf_counter() - start,
        details={"n_test": len(y)},
    )


class GeneralizationGap(CheckParams):
    """Parameters of ``generalization_gap``."""

    metric: MetricName = "accuracy"
    max_gap: float = Field(ge=0.0, le=1.0)


@register_check("generalization_gap", GeneralizationGap)
def generalization_gap(params: GeneralizationGap, ctx: CheckContext) -> Finding:
    """Train minus held-out score must stay small: a large gap means memorised training rows.

    Overfitting is what membership-inference attacks exploit (Shokri et al., S&P 2017), so the gap
    is a cheap first signal of privacy leakage as well as of poor generalisation. The interval
    resamples the training and the held-out rows independently.
    """
    start, before = time.perf_counter(), ctx.model.queries
    classes = ctx.model.classes_
    sets = [
        (ctx.y_train.to_numpy(), ctx.model.predict_proba(ctx.X_train)),
        (ctx.y_test.to_numpy(), ctx.model.predict_proba(ctx.X_test)),
    ]

    def score(k: int, rows: Any = slice(None)) -> float:
        y, proba = sets[k]
        return metric_value(params.metric, y[rows], proba[rows], classes, ctx.positive)

    train, test = score(0), score(1)
    gap = train - test
    n_train, n_test = len(sets[0][0]), len(sets[1][0])
    interval = bootstrap_interval(
        lambda i, j: score(0, i) - score(1, j), n_train, n_test, seed=ctx.seed
    )
    verdict = decide(gap, interval, params.max_gap, "<=")
    return Finding(
        check="generalization_gap",
        metric=f"{params.metric}_gap",
        value=gap,
        threshold=params.max_gap,
        comparison="<=",
        verdict=verdict,
        n=n_test,
        interval=interval,
        message=f"train-test {params.metric} gap {gap:.4f}{span(interval)} "
        f"({n_train:,} train, {n_test:,} held-out rows): "
        f"{VERDICT_WORDS[verdict]} the limit {params.max_gap:g}",
        queries=ctx.model.queries - before,
        wall_time_s=time.perf_counter() - start,
        details={"train": train, "test": test, "n_train": n_train},
    )


def run_check(key: str, params: dict[str, Any], ctx: CheckContext) -> Finding:
    """Validate ``params`` for check ``key`` and run it."""
    definition = CHECKS[key]
    return definition.run(definition.params.model_validate(params), ctx)
