"""The statistics the extraction detectors test: the top-1 margin of an answer, and a fast
Shapiro-Wilk W for PRADA's per-request normality test."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlwarden.errors import ParameterError

__all__ = ["shapiro_w", "top_margin"]

FloatArray = NDArray[np.float64]


def top_margin(proba: ArrayLike) -> FloatArray:
    """Top-1 minus top-2 probability, per row (1.0 for a single-class answer).

    Parameters
    ----------
    proba : array of shape (k,) or (n, k)

    Returns
    -------
    ndarray of shape (n,)
    """
    p = np.atleast_2d(np.asarray(proba, dtype=np.float64))
    if p.shape[1] < 2:
        return np.ones(p.shape[0])
    top2 = -np.partition(-p, 1, axis=1)[:, :2]
    return np.asarray(top2[:, 0] - top2[:, 1])


@lru_cache(maxsize=64)
def _shapiro_coefficients(n: int) -> FloatArray:
    """Royston's (1992, AS R94) approximate Shapiro-Wilk coefficients for ``n >= 6``."""
    from scipy.special import ndtri

    m = ndtri((np.arange(1, n + 1) - 0.375) / (n + 0.25))
    mm = float(m @ m)
    u = 1.0 / math.sqrt(n)
    c = m / math.sqrt(mm)
    a_n = c[-1] + np.polyval([-2.706056, 4.434685, -2.071190, -0.147981, 0.221157, 0.0], u)
    a_n1 = c[-2] + np.polyval([-3.582633, 5.682633, -1.752461, -0.293762, 0.042981, 0.0], u)
    phi = (mm - 2 * m[-1] ** 2 - 2 * m[-2] ** 2) / (1 - 2 * a_n**2 - 2 * a_n1**2)
    a = m / math.sqrt(phi)
    a[-1], a[-2], a[0], a[1] = a_n, a_n1, -a_n, -a_n1
    return np.asarray(a)


def shapiro_w(sample: ArrayLike) -> float:
    """The Shapiro-Wilk statistic W of a sample (1.0 for a sample without spread).

    The same statistic as :func:`scipy.stats.shapiro` (Royston's AS R94 coefficients), cached
    per sample size and without scipy's call overhead: about 20 µs for 1,000 values instead
    of about 170 µs, which matters once per request.

    Parameters
    ----------
    sample : array of at least 6 values

    Returns
    -------
    float
        W in (0, 1]; small values mean a non-normal sample.
    """
    return shapiro_w_sorted(np.sort(np.asarray(sample, dtype=np.float64).reshape(-1)))


def shapiro_w_sorted(y: FloatArray) -> float:
    """:func:`shapiro_w` of a flat float64 sample already in ascending order (not sorted
    again: PRADA keeps its distances sorted as they arrive)."""
    n = len(y)
    if n < 6:
        raise ParameterError(f"the Shapiro-Wilk statistic needs at least 6 values, got {n}")
    centred = y - y.mean()
    ss = float(centred @ centred)
    if ss <= 1e-300 * n or y[-1] == y[0]:
        return 1.0
    numerator = float(_shapiro_coefficients(n) @ centred)
    return min(numerator * numerator / ss, 1.0)
