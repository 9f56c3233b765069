"""The performance checks: a held-out score floor and the train-test gap."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from mlwarden.audit._checks import (
    VERDICT_WORDS,
    CheckContext,
    CheckParams,
    Finding,
    register_check,
    span,
)
from mlwarden.audit._metrics import MetricName, as_codes, metric_value
from mlwarden.audit._stats import bootstrap_interval, decide


class PerformanceFloor(CheckParams):
    """Parameters of ``performance_floor``."""

    metric: MetricName = "f1"
    min: float = Field(ge=0.0, le=1.0)


@register_check("performance_floor", PerformanceFloor)
def performance_floor(params: PerformanceFloor, ctx: CheckContext) -> Finding:
    """Held-out performance must reach a floor: a model worse than this is not worth shipping."""
    proba = ctx.model.predict_proba(ctx.X_test)
    y, classes, positive = as_codes(ctx.y_test.to_numpy(), ctx.model.classes_, ctx.positive)
    value = metric_value(params.metric, y, proba, classes, positive)
    interval = bootstrap_interval(
        lambda i: metric_value(params.metric, y[i], proba[i], classes, positive),
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
    import numpy as np

    both = np.concatenate([ctx.y_train.to_numpy(), ctx.y_test.to_numpy()])
    y, classes, positive = as_codes(both, ctx.model.classes_, ctx.positive)
    y_train, y_test = y[: len(ctx.y_train)], y[len(ctx.y_train) :]
    sets = [
        (y_train, ctx.model.predict_proba(ctx.X_train)),
        (y_test, ctx.model.predict_proba(ctx.X_test)),
    ]

    def score(k: int, rows: Any = slice(None)) -> float:
        y, proba = sets[k]
        return metric_value(params.metric, y[rows], proba[rows], classes, positive)

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
        details={"train": train, "test": test, "n_train": n_train},
    )
