"""Intervals and the three-valued verdict every finding carries.

A measured value is a sample statistic: a verdict that ignores its sampling error either fails
healthy models by chance or passes weak ones by luck. Each check reports its sample size and a
95% interval, and the verdict is ``pass`` only when the whole interval is on the allowed side of
the threshold, ``fail`` only when the whole interval is past it, and ``inconclusive`` otherwise:
the sample cannot decide at the stated level.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from mlwarden.errors import ParameterError

Verdict = Literal["pass", "fail", "inconclusive"]
Comparison = Literal[">=", "<="]

#: Two-sided level of every interval a finding reports.
LEVEL = 0.95
#: Bootstrap resamples behind an interval (percentile method).
N_BOOTSTRAP = 300


def proportion_interval(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Clopper-Pearson (exact binomial) interval of ``successes / n``; (0, 1) for ``n = 0``."""
    from scipy import stats

    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ParameterError(f"successes must lie in 0..{n}, got {successes}")
    alpha = 1.0 - level
    low = 0.0 if successes == 0 else float(stats.beta.ppf(alpha / 2, successes, n - successes + 1))
    high = (
        1.0
        if successes == n
        else float(stats.beta.ppf(1 - alpha / 2, successes + 1, n - successes))
    )
    return low, high


def bootstrap_interval(
    statistic: Callable[..., float],
    *sizes: int,
    seed: int,
    n_boot: int = N_BOOTSTRAP,
    level: float = LEVEL,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``statistic(*indices)``.

    ``statistic`` gets one index array per sample, each of ``sizes`` rows drawn with replacement
    (independent samples, such as training and held-out rows, resample apart), and returns the
    statistic on those rows (NaN where it is undefined on a resample, e.g. AUC with one class:
    such resamples are dropped). None when fewer than half the resamples give a number.
    """
    import numpy as np

    if not sizes or min(sizes) <= 0:
        return None
    rng = np.random.default_rng([seed, 97])
    values = np.array(
        [statistic(*(rng.integers(0, n, n) for n in sizes)) for _ in range(n_boot)], dtype=float
    )
    values = values[np.isfinite(values)]
    if len(values) < n_boot / 2:
        return None
    alpha = 1.0 - level
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def decide(
    value: float | None,
    interval: tuple[float, float] | None,
    threshold: float,
    comparison: Comparison,
) -> Verdict:
    """The verdict of ``value comparison threshold`` given its interval.

    Without an interval (a value with no sampling error, such as a count over the whole
    population) the point value decides. An unmeasured value fails: a check that could not
    measure proves nothing.
    """
    if value is None or not math.isfinite(value):
        return "fail"
    low, high = interval if interval is not None else (value, value)
    if comparison == "<=":
        if high <= threshold:
            return "pass"
        return "fail" if low > threshold else "inconclusive"
    if low >= threshold:
        return "pass"
    return "fail" if high < threshold else "inconclusive"
