"""Efficacy from feedback: how well a model's answers matched the labels analysts sent back.

Pure functions of labelled outcomes (what the model said, what was true, and the probability
it gave the positive class): precision, recall and F1 of the positive class, expected
calibration error, each with a 95% interval, and a comparison of two models (A/B arms or
versions) that says whether their difference is significant.

- Precision and recall are proportions: Wilson score intervals (Wilson 1927), and between two
  models a two-proportion z-test with Newcombe's hybrid score interval of the difference
  (Newcombe 1998, method 10).
- F1 is not a proportion: its interval and that of a difference come from a bootstrap over the
  confusion counts (multinomial resampling, seeded, so the same data give the same interval).
- ECE: equal-width bins over the predicted probability of the positive class; the mean of
  ``|observed positive rate - mean predicted probability|`` weighted by each bin's share of
  rows (Naeini et al. 2015).

Fewer labelled outcomes than ``min_labelled`` make a measurement *inconclusive*: the numbers
are still reported, but nothing is decided from them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

from pydantic import BaseModel

from mlwarden.errors import ParameterError

Z95 = 1.959963984540054
BOOTSTRAP = 2000


class Outcome(NamedTuple):
    """One labelled answer: predicted positive, truly positive, and P(positive) when known."""

    predicted: bool
    actual: bool
    p: float | None = None


class Interval(BaseModel):
    """A point estimate with its 95% interval; all None when it is undefined (0 / 0)."""

    value: float | None
    low: float | None
    high: float | None


class Efficacy(BaseModel):
    """Precision, recall, F1 and calibration error of one model over its labelled outcomes."""

    labelled: int
    positives: int
    predicted_positives: int
    precision: Interval
    recall: Interval
    f1: Interval
    calibration_error: float | None
    status: Literal["measured", "inconclusive"]


class Difference(BaseModel):
    """B minus A for one metric, its 95% interval, and whether it is significant at 5%."""

    metric: str
    a: float | None
    b: float | None
    difference: float | None
    low: float | None
    high: float | None
    p_value: float | None
    significant: bool


class Comparison(BaseModel):
    """Two models over their labelled outcomes, and which is better (by F1) if the data decide."""

    a: str
    b: str
    efficacy_a: Efficacy
    efficacy_b: Efficacy
    differences: list[Difference]
    verdict: Literal["a", "b", "inconclusive"]
    reason: str


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def wilson(successes: int, n: int, z: float = Z95) -> Interval:
    """The proportion ``successes / n`` with its Wilson score interval."""
    if not 0 <= successes <= n:
        raise ParameterError(f"wilson needs 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return Interval(value=None, low=None, high=None)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(value=p, low=max(0.0, centre - half), high=min(1.0, centre + half))


def confusion(outcomes: Sequence[Outcome]) -> tuple[int, int, int, int]:
    """``(tp, fp, fn, tn)`` of the positive class."""
    tp = sum(o.predicted and o.actual for o in outcomes)
    fp = sum(o.predicted and not o.actual for o in outcomes)
    fn = sum(not o.predicted and o.actual for o in outcomes)
    return tp, fp, fn, len(outcomes) - tp - fp - fn


def _f1(tp: int, fp: int, fn: int) -> float | None:
    return _ratio(2 * tp, 2 * tp + fp + fn)


def calibration_error(outcomes: Sequence[Outcome], bins: int = 10) -> float | None:
    """Expected calibration error over the outcomes that carry P(positive); None if none do."""
    if bins < 1:
        raise ParameterError(f"calibration needs at least 1 bin, got {bins}")
    scored = [o for o in outcomes if o.p is not None]
    if not scored:
        return None
    totals = [[0, 0.0, 0] for _ in range(bins)]  # rows, sum of p, positives
    for o in scored:
        p = min(max(float(o.p), 0.0), 1.0)  # type: ignore[arg-type]
        cell = totals[min(int(p * bins), bins - 1)]
        cell[0] += 1
        cell[1] += p
        cell[2] += int(o.actual)
    return sum(abs(pos - ps) for n, ps, pos in totals if n) / len(scored)


def _f1_draws(counts: tuple[int, int, int, int], seed: int) -> list[float]:
    """Bootstrap F1 values from multinomial draws of the confusion counts (NaN when undefined)."""
    import numpy as np

    n = sum(counts)
    if n == 0:
        return []
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, np.asarray(counts, dtype=float) / n, size=BOOTSTRAP)
    tp, fp, fn = draws[:, 0], draws[:, 1], draws[:, 2]
    den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(den > 0, 2 * tp / np.maximum(den, 1), np.nan)
    return [float(v) for v in f1]


def _percentiles(values: Sequence[float]) -> tuple[float | None, float | None]:
    import numpy as np

    kept = np.asarray([v for v in values if not math.isnan(v)])
    if kept.size == 0:
        return None, None
    low, high = np.percentile(kept, [2.5, 97.5])
    return float(low), float(high)


def efficacy(
    outcomes: Sequence[Outcome], *, min_labelled: int = 30, bins: int = 10, seed: int = 0
) -> Efficacy:
    """Precision, recall, F1 (with 95% intervals) and ECE of ``outcomes``.

    ``inconclusive`` when fewer than ``min_labelled`` outcomes are labelled.
    """
    if min_labelled < 1:
        raise ParameterError(f"min_labelled must be at least 1, got {min_labelled}")
    tp, fp, fn, tn = confusion(outcomes)
    f1 = _f1(tp, fp, fn)
    low, high = _percentiles(_f1_draws((tp, fp, fn, tn), seed)) if f1 is not None else (None, None)
    return Efficacy(
        labelled=len(outcomes),
        positives=tp + fn,
        predicted_positives=tp + fp,
        precision=wilson(tp, tp + fp),
        recall=wilson(tp, tp + fn),
        f1=Interval(value=f1, low=low, high=high),
        calibration_error=calibration_error(outcomes, bins),
        status="measured" if len(outcomes) >= min_labelled else "inconclusive",
    )


def _undecided(metric: str, a: float | None, b: float | None) -> Difference:
    """The difference of a metric undefined on one side (0 / 0): nothing to test."""
    return Difference(
        metric=metric,
        a=a,
        b=b,
        difference=None,
        low=None,
        high=None,
        p_value=None,
        significant=False,
    )


def two_proportions(
    metric: str, k_a: int, n_a: int, k_b: int, n_b: int, z: float = Z95
) -> Difference:
    """``k_b/n_b - k_a/n_a``: pooled two-proportion z-test and Newcombe's hybrid score interval."""
    a, b = wilson(k_a, n_a, z), wilson(k_b, n_b, z)
    if a.value is None or b.value is None:
        return _undecided(metric, a.value, b.value)
    assert a.low is not None and a.high is not None and b.low is not None and b.high is not None
    d = b.value - a.value
    low = d - math.sqrt((b.value - b.low) ** 2 + (a.high - a.value) ** 2)
    high = d + math.sqrt((b.high - b.value) ** 2 + (a.value - a.low) ** 2)
    pooled = (k_a + k_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    p_value = 1.0 if se == 0 else math.erfc(abs(d) / se / math.sqrt(2))
    return Difference(
        metric=metric,
        a=a.value,
        b=b.value,
        difference=d,
        low=low,
        high=high,
        p_value=p_value,
        significant=p_value < 0.05,
    )


def f1_difference(a: Sequence[Outcome], b: Sequence[Outcome], seed: int = 0) -> Difference:
    """F1 of B minus F1 of A with a bootstrap 95% interval; significant when it excludes 0.

    The p-value is the two-sided bootstrap share of differences on the far side of 0.
    """
    ca, cb = confusion(a), confusion(b)
    fa, fb = _f1(*ca[:3]), _f1(*cb[:3])
    if fa is None or fb is None:
        return _undecided("f1", fa, fb)
    diffs = [
        y - x
        for x, y in zip(_f1_draws(ca, seed), _f1_draws(cb, seed + 1), strict=True)
        if not (math.isnan(x) or math.isnan(y))
    ]
    low, high = _percentiles(diffs)
    below = sum(v <= 0 for v in diffs) / len(diffs)
    above = sum(v >= 0 for v in diffs) / len(diffs)
    significant = low is not None and high is not None and (low > 0 or high < 0)
    return Difference(
        metric="f1",
        a=fa,
        b=fb,
        difference=fb - fa,
        low=low,
        high=high,
        p_value=min(1.0, 2 * min(below, above)),
        significant=significant,
    )


def compare(
    name_a: str,
    a: Sequence[Outcome],
    name_b: str,
    b: Sequence[Outcome],
    *,
    min_labelled: int = 30,
    bins: int = 10,
    seed: int = 0,
) -> Comparison:
    """Which of two models is better by F1, by how much, and whether the data can tell.

    Also tests precision and recall (two-proportion z-tests). The verdict is ``inconclusive``
    while either side has fewer than ``min_labelled`` outcomes or the F1 interval holds 0.
    """
    ea = efficacy(a, min_labelled=min_labelled, bins=bins, seed=seed)
    eb = efficacy(b, min_labelled=min_labelled, bins=bins, seed=seed)
    (tpa, fpa, fna, _), (tpb, fpb, fnb, _) = confusion(a), confusion(b)
    f1 = f1_difference(a, b, seed)
    differences = [
        f1,
        two_proportions("precision", tpa, tpa + fpa, tpb, tpb + fpb),
        two_proportions("recall", tpa, tpa + fna, tpb, tpb + fnb),
    ]
    verdict: Literal["a", "b", "inconclusive"] = "inconclusive"
    if ea.status == "inconclusive" or eb.status == "inconclusive":
        reason = (
            f"too few labelled decisions: {name_a} has {ea.labelled}, {name_b} has "
            f"{eb.labelled}, at least {min_labelled} each are needed"
        )
    elif f1.difference is None:
        reason = "F1 is undefined: no positive label or positive prediction on one side"
    elif not f1.significant:
        reason = (
            f"the F1 difference is not significant (its 95% interval holds 0; p={f1.p_value:.3g})"
        )
    else:
        verdict = "b" if f1.difference > 0 else "a"
        better, worse = (name_b, name_a) if verdict == "b" else (name_a, name_b)
        reason = f"{better} has a higher F1 than {worse} by {abs(f1.difference):.3f}"
    return Comparison(
        a=name_a,
        b=name_b,
        efficacy_a=ea,
        efficacy_b=eb,
        differences=differences,
        verdict=verdict,
        reason=reason,
    )
