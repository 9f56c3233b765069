"""The one-run lower bound against a Gaussian f-DP claim (Mahloujifar, Melis & Chaudhuri 2024).

Steinke et al.'s one-run bound (:func:`~mlwarden.attacks.epsilon_lower_bound`) tests the null
"the mechanism is (epsilon, delta)-DP": for a Gaussian mechanism that null is far weaker than
the truth, and its ``2 m delta`` slack caps the bound near 2 at epsilon 8. Mahloujifar et al.
[1]_ test the whole trade-off curve instead. Here the null is "every canary is protected by
``mu``-Gaussian DP (Dong, Roth & Su [2]_), with ``mu`` the Gaussian mechanism's that is exactly
(epsilon, delta)-DP"; the reported epsilon is the largest for which ``k`` top-ranked "in"
guesses with ``c`` right reject that null at the stated confidence.

When the null follows from a DP-SGD claim: with full-batch training (every canary in every
one of ``T`` steps, noise ``sigma``) each canary sees ``T`` composed Gaussian mechanisms,
exactly ``sqrt(T) / sigma``-GDP, and the RDP accountant's epsilon is at least that mechanism's
exact epsilon, so the claim implies the null. With Poisson sampling (``q < 1``) the trade-off
curve is not Gaussian and the claim does not imply the null: use Steinke's bound there.

References
----------
.. [1] S. Mahloujifar, L. Melis, K. Chaudhuri, "Auditing f-Differential Privacy in One Run",
   arXiv:2410.22235, 2024 (the ``audit_rh_with_cap`` procedure).
.. [2] J. Dong, A. Roth, W. J. Su, "Gaussian Differential Privacy", JRSS B 84(1), 2022,
   Corollary 2.13.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from scipy import optimize, special

from mlwarden.attacks._dp_bounds import (
    EpsilonLowerBound,
    check_confidence_delta,
    no_bound,
    ranked_counts,
)
from mlwarden.errors import ParameterError

__all__ = ["GDP_GUESS_FRACTIONS", "epsilon_lower_bound_gdp", "gaussian_mu", "gdp_one_run_margin"]

#: Default "in"-guess counts, as fractions of the canaries (one-sided: no "out" guesses).
GDP_GUESS_FRACTIONS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)

_EPS_CAP = 64.0


def _gdp_log_delta(epsilon: float, mu: float) -> float:
    """log delta(epsilon) of mu-GDP: log[Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)]."""
    a = float(special.log_ndtr(-epsilon / mu + mu / 2))
    b = epsilon + float(special.log_ndtr(-epsilon / mu - mu / 2))
    return a + math.log(-math.expm1(b - a)) if b < a else -math.inf


def gaussian_mu(epsilon: float, delta: float) -> float:
    """The ``mu`` of the Gaussian mechanism that is exactly (epsilon, delta)-DP.

    Solves ``Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) = delta`` (Dong, Roth & Su 2022,
    Corollary 2.13); the left side grows with ``mu``. Sensitivity over noise: ``mu = 1 / sigma``.
    """
    if not epsilon >= 0.0 or not 0.0 < delta < 1.0:
        raise ParameterError(
            f"need epsilon >= 0 and 0 < delta < 1 for a Gaussian mu, got {epsilon}, {delta}"
        )
    target = math.log(delta)
    return float(
        optimize.brentq(
            lambda mu: _gdp_log_delta(epsilon, mu) - target, 1e-9, 1e3, xtol=1e-12, rtol=1e-12
        )
    )


def gdp_one_run_margin(mu: float, m: int, k: int, c: int, significance: float) -> float:
    """Positive when ``c`` right of ``k`` "in" guesses among ``m`` canaries reject ``mu``-GDP.

    The ``audit_rh_with_cap`` recursion of Mahloujifar et al. (2024) for the Gaussian
    trade-off function, whose inverse blow-up is ``x -> Phi(Phi^-1(x) - mu)``: start from
    ``r = tau c / m``, ``h = tau (k - c) / m`` (``tau`` the significance); for
    ``i = c - 1, ..., 0`` set ``h' = max(h, Phi(Phi^-1(r) - mu))`` and
    ``r' = min(1, r + i / (k - i) (h' - h))``; the null is rejected when ``r + h > k / m``.
    """
    r = significance * c / m
    h = significance * (k - c) / m
    for i in range(c - 1, -1, -1):
        h_new = max(h, float(special.ndtr(special.ndtri(r) - mu)))
        if h_new == h:  # neither r nor h can change again
            break
        r = min(r + i / (k - i) * (h_new - h), 1.0)
        h = h_new
    return r + h - k / m


def _epsilon_for(m: int, k: int, c: int, delta: float, significance: float) -> float:
    """The largest epsilon whose Gaussian null the guesses reject (0: none)."""

    def margin(eps: float) -> float:
        return gdp_one_run_margin(gaussian_mu(eps, delta), m, k, c, significance)

    if k == 0 or margin(0.0) <= 0:
        return 0.0
    low, high = 0.0, 1.0
    while margin(high) > 0:
        if high >= _EPS_CAP:
            return _EPS_CAP
        low, high = high, high * 2.0
    return float(optimize.brentq(margin, low, high, xtol=1e-6))


def epsilon_lower_bound_gdp(
    scores: Any,
    is_member: Any,
    *,
    delta: float,
    confidence: float = 0.95,
    guesses: Sequence[int] | None = None,
    seed: int = 0,
) -> EpsilonLowerBound:
    """One-run lower bound on epsilon against the Gaussian f-DP null (module docstring).

    Guess "in" for the ``k`` highest scores, for each ``k`` of ``guesses`` (default: the
    :data:`GDP_GUESS_FRACTIONS` of ``m``), each tested at ``(1 - confidence) / G``
    (Bonferroni over the ``G`` counts); the largest epsilon is reported (``k_neg`` 0). Valid
    only where the claim implies Gaussian DP for each canary (full-batch DP-SGD): see the
    module docstring.

    Raises
    ------
    DataError
        As :func:`~mlwarden.attacks.epsilon_lower_bound`.
    ValueError
        ``confidence`` outside (0, 1), ``delta`` outside (0, 1), a count outside 1..m.
    """
    check_confidence_delta(confidence, delta)
    if delta <= 0.0:
        raise ParameterError("the Gaussian null needs delta > 0 (no Gaussian is (eps, 0)-DP)")
    members_top, _ = ranked_counts(scores, is_member, seed)
    m = len(members_top) - 1
    counts = sorted(
        {max(1, round(m * f)) for f in GDP_GUESS_FRACTIONS}
        if guesses is None
        else {int(k) for k in guesses}
    )
    if not counts or counts[0] < 1 or counts[-1] > m:
        raise ParameterError(f"each guess count must lie in 1..{m} (the canaries), got {counts}")
    significance = (1.0 - confidence) / len(counts)
    best = no_bound(delta, confidence, m, len(counts))
    for k in counts:
        c = int(members_top[k])
        if c * 2 <= k:
            continue
        if best.epsilon > 0:
            mu = gaussian_mu(best.epsilon, delta)
            if gdp_one_run_margin(mu, m, k, c, significance) <= 0:
                continue  # cannot beat the best so far
        eps = _epsilon_for(m, k, c, delta, significance)
        if eps > best.epsilon:
            best = best.model_copy(
                update={"epsilon": eps, "k_pos": k, "n_guesses": k, "n_correct": c}
            )
    return best
