"""Lower bounds on epsilon from a membership attack's success: one-run and ROC-based.

A differential-privacy guarantee is an *upper* bound on what a training algorithm leaks; these
turn an attack's success into a *lower* bound that holds with a stated confidence.

* :func:`epsilon_lower_bound` is the one-run audit of Steinke, Nasr & Jagielski (2023) [1]_:
  rigorous for a single model, the randomness being the audit rows' inclusion coin flips.
* :func:`epsilon_from_roc` is the older bound of Jagielski et al. (2020) [2]_ from one
  threshold's TPR and FPR with Clopper-Pearson intervals (heuristic for one model).

References
----------
.. [1] T. Steinke, M. Nasr, M. Jagielski, "Privacy Auditing with One (1) Training Run",
   Advances in Neural Information Processing Systems 36 (NeurIPS), 2023. arXiv:2305.08846.
.. [2] M. Jagielski, J. Ullman, A. Oprea, "Auditing Differentially Private Machine Learning:
   How Private is Private SGD?", NeurIPS 2020.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel
from scipy import optimize, stats

from mlwarden.errors import DataError, ParameterError

__all__ = [
    "GUESS_FRACTIONS",
    "EpsilonLowerBound",
    "epsilon_from_roc",
    "epsilon_lower_bound",
    "one_run_p_value",
]

#: The default grid of guess counts: ``k+`` and ``k-`` each range over these fractions of the
#: audit rows (pairs with ``k+ + k- > m`` or no guess at all are dropped).
GUESS_FRACTIONS: tuple[float, ...] = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)

_EPS_CAP = 64.0
_XTOL = 1e-9


class EpsilonLowerBound(BaseModel):
    """The one-run lower bound on epsilon and the guess that achieved it.

    ``epsilon`` is the largest lower bound over the grid of ``(k_pos, k_neg)`` guess counts,
    each tested at significance ``(1 - confidence) / n_hypotheses`` (Bonferroni), so the bound
    holds with probability at least ``confidence`` over the inclusion coin flips. ``k_pos``,
    ``k_neg``, ``n_guesses`` (``r``) and ``n_correct`` (``v``) describe the winning guess; 0
    everywhere when no guess beat chance.
    """

    epsilon: float
    delta: float
    confidence: float
    n_audit: int
    n_hypotheses: int
    k_pos: int
    k_neg: int
    n_guesses: int
    n_correct: int


# --------------------------------------------------------------------------------------------
# The one-run bound


def no_bound(delta: float, confidence: float, m: int, n_hypotheses: int) -> EpsilonLowerBound:
    """The bound before any guess beat chance: epsilon 0, no guesses."""
    return EpsilonLowerBound(
        epsilon=0.0,
        delta=delta,
        confidence=confidence,
        n_audit=m,
        n_hypotheses=n_hypotheses,
        k_pos=0,
        k_neg=0,
        n_guesses=0,
        n_correct=0,
    )


def check_confidence_delta(confidence: float, delta: float) -> None:
    """Refuse a confidence outside (0, 1) or a delta outside [0, 1)."""
    if not 0.0 < confidence < 1.0:
        raise ParameterError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if not 0.0 <= delta < 1.0:
        raise ParameterError(f"delta must lie in [0, 1), got {delta}")


def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """Probability of ``v`` or more correct guesses out of ``r`` under (epsilon, delta)-DP.

    The bound of Steinke, Nasr & Jagielski (2023): their main theorem (Section 3) for
    ``delta = 0``, Corollary 5.4 and the reference code of their Appendix D for ``delta > 0``::

        q     = e^eps / (1 + e^eps)
        beta  = P[Binomial(r, q) >= v]
        alpha = max_{i = 1..v} P[v - i <= Binomial(r, q) < v] / i
        p     = min(1, beta + 2 m delta alpha)

    Parameters
    ----------
    m : int
        Audit rows, each included independently with probability 1/2 (abstentions count).
    r : int
        Guesses made (rows not abstained on).
    v : int
        Correct guesses.
    epsilon, delta : float
        The null hypothesis: the training algorithm is (epsilon, delta)-DP.

    Returns
    -------
    float
    """
    q = float(1.0 / (1.0 + math.exp(-epsilon))) if epsilon < 700 else 1.0
    beta = float(stats.binom.sf(v - 1, r, q))
    if delta == 0.0 or v == 0:
        return min(beta, 1.0)
    i = np.arange(1, v + 1)
    # P[v - i <= B < v] = P[B >= v - i] - P[B >= v]
    window = stats.binom.sf(v - i - 1, r, q) - beta
    alpha = float(np.max(window / i))
    return min(beta + 2.0 * m * delta * alpha, 1.0)


def _epsilon_for(m: int, r: int, v: int, delta: float, significance: float) -> float:
    """The largest epsilon whose p-value stays at or below ``significance`` (0: none).

    The p-value grows continuously with epsilon, so the answer is the root of
    ``p(eps) = significance`` (bracketed by doubling, then Brent's method).
    """
    if r == 0 or one_run_p_value(m, r, v, 0.0, delta) > significance:
        return 0.0
    low, high = 0.0, 1.0
    while one_run_p_value(m, r, v, high, delta) <= significance:
        if high >= _EPS_CAP:
            return _EPS_CAP
        low, high = high, high * 2.0
    root = optimize.brentq(
        lambda eps: one_run_p_value(m, r, v, eps, delta) - significance, low, high, xtol=_XTOL
    )
    return float(root)


def ranked_counts(scores: Any, is_member: Any, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Members among the top ``k`` and non-members among the bottom ``k`` scores, k = 0..m.

    Ties are broken at random (seeded), so tied rows are ranked independently of membership.

    Raises
    ------
    DataError
        Lengths differ, a score is not finite, or the rows are all members or all non-members.
    """
    values = np.asarray(scores, dtype=float)
    labels = np.asarray(is_member, dtype=bool)
    if values.ndim != 1 or labels.shape != values.shape:
        raise DataError(
            f"scores {values.shape} and is_member {labels.shape} must be 1-d and equally long"
        )
    if not np.all(np.isfinite(values)):
        raise DataError("membership scores must be finite")
    m = len(values)
    if m == 0 or labels.all() or not labels.any():
        raise DataError(
            "the audit rows must include members and non-members (each row included with "
            f"probability 1/2); got {int(labels.sum())} members of {m} rows"
        )
    tiebreak = np.random.default_rng(seed).random(m)
    ranked = labels[np.lexsort((tiebreak, values))]  # ascending score
    members_top = np.concatenate([[0], np.cumsum(ranked[::-1])])
    non_members_bottom = np.concatenate([[0], np.cumsum(~ranked)])
    return members_top, non_members_bottom


def _guess_grid(m: int, guesses: Sequence[tuple[int, int]] | None) -> list[tuple[int, int]]:
    if guesses is None:
        counts = sorted({round(m * f) for f in GUESS_FRACTIONS})
        return [(kp, kn) for kp in counts for kn in counts if 0 < kp + kn <= m]
    grid = []
    for pair in guesses:
        kp, kn = (int(k) for k in pair)
        if kp < 0 or kn < 0 or kp + kn == 0 or kp + kn > m:
            raise ParameterError(
                f"each guess (k_pos, k_neg) needs k_pos, k_neg >= 0 and 0 < k_pos + k_neg <= "
                f"{m} (the audit rows), got {pair}"
            )
        grid.append((kp, kn))
    if not grid:
        raise ParameterError("guesses must hold at least one (k_pos, k_neg) pair")
    return grid


def epsilon_lower_bound(
    scores: Any,
    is_member: Any,
    *,
    delta: float = 0.0,
    confidence: float = 0.95,
    guesses: Sequence[tuple[int, int]] | None = None,
    seed: int = 0,
) -> EpsilonLowerBound:
    """One-run lower bound on epsilon (Steinke, Nasr & Jagielski 2023) from membership scores.

    Setting: ``m`` audit rows, each included in the training set independently with
    probability 1/2, then **one** model trained. The attacker ranks the rows by score and
    guesses "member" for the ``k+`` highest and "non-member" for the ``k-`` lowest,
    abstaining on the rest; ``r = k+ + k-`` guesses, ``v`` of them correct. The statement
    implemented (their main theorem, Section 3; Corollary 5.4 for ``delta > 0``): if training is
    (epsilon, delta)-DP, then for every ``v``::

        P[correct >= v] <= P[Binomial(r, q) >= v] + 2 m delta alpha,   q = e^eps / (1 + e^eps)

    with ``alpha`` as in :func:`one_run_p_value` (0 when ``delta = 0``: the count of correct
    guesses is then stochastically dominated by ``Binomial(r, q)``). The bound for one
    ``(k+, k-)`` is the largest epsilon whose tail probability is at most the significance.

    Choosing ``(k+, k-)`` after seeing the scores is a multiple test: every pair of the grid is
    tested at significance ``(1 - confidence) / G`` for a grid of ``G`` pairs (Bonferroni), and
    the largest bound is reported; it holds with probability ``confidence`` jointly. Pass a
    single pair in ``guesses`` to fix the guess counts in advance (``G = 1``, no correction).

    Parameters
    ----------
    scores : array-like of float, shape (m,)
        Membership scores; higher means "more likely a member".
    is_member : array-like of bool, shape (m,)
        Whether each audit row was included; it must come from independent fair coin flips,
        made before training, for the bound to hold.
    delta : float, default 0.0
        The delta of the (epsilon, delta)-DP null hypothesis.
    confidence : float, default 0.95
        Probability that the bound holds, in (0, 1).
    guesses : sequence of (k_pos, k_neg) or None
        Guess counts to try; None tries every pair of :data:`GUESS_FRACTIONS` of ``m``.
    seed : int, default 0
        Breaks ties in the scores at random (so tied rows are ranked independently of their
        membership, as the theorem requires).

    Returns
    -------
    EpsilonLowerBound

    Raises
    ------
    DataError
        Lengths differ, a score is not finite, or the audit rows are all members or all
        non-members (no coin flips were made).
    ValueError
        ``confidence`` outside (0, 1), ``delta`` outside [0, 1), or an impossible guess pair.

    References
    ----------
    .. [1] T. Steinke, M. Nasr, M. Jagielski, "Privacy Auditing with One (1) Training Run",
       NeurIPS 2023, Section 3, Corollary 5.4 and Appendix D.
    """
    check_confidence_delta(confidence, delta)
    members_top, non_members_bottom = ranked_counts(scores, is_member, seed)
    m = len(members_top) - 1
    grid = _guess_grid(m, guesses)
    significance = (1.0 - confidence) / len(grid)

    best = no_bound(delta, confidence, m, len(grid))
    for kp, kn in grid:
        r = kp + kn
        v = int(members_top[kp] + non_members_bottom[kn])
        if v * 2 <= r:  # no better than chance: the bound is 0
            continue
        if best.epsilon > 0 and one_run_p_value(m, r, v, best.epsilon, delta) > significance:
            continue  # this pair's bound is below the best so far (p grows with epsilon)
        eps = _epsilon_for(m, r, v, delta, significance)
        if eps > best.epsilon:
            best = best.model_copy(
                update={"epsilon": eps, "k_pos": kp, "k_neg": kn, "n_guesses": r, "n_correct": v}
            )
    return best


# --------------------------------------------------------------------------------------------
# The ROC bound


def epsilon_from_roc(
    tpr: Any,
    fpr: Any,
    n_members: int,
    n_non_members: int,
    *,
    delta: float = 0.0,
    confidence: float = 0.95,
) -> float:
    """Epsilon lower bound from TPR/FPR pairs with Clopper-Pearson intervals (heuristic).

    The (epsilon, delta)-DP inequalities for the event "score above the threshold", read as
    in Jagielski et al. (2020) [1]_::

        eps >= log((TPR_lo - delta) / FPR_hi)
        eps >= log((1 - FPR_hi - delta) / (1 - TPR_lo))

    where ``TPR_lo`` and ``FPR_hi`` are one-sided Clopper-Pearson bounds from the counts
    ``round(tpr * n_members)`` and ``round(fpr * n_non_members)``. Both bounds of all ``K``
    points are taken at level ``(1 - confidence) / (2 K)`` (Bonferroni over the points and the
    two intervals) and the largest resulting epsilon is returned (0 if none is positive).

    **Heuristic for a single model**: Clopper-Pearson treats each row as an independent trial
    of the mechanism, as if every row came from its own training run. Rows scored by one model
    are not independent trials, so this is not a guarantee; :func:`epsilon_lower_bound` (the
    one-run audit) is the rigorous bound for one model.

    Parameters
    ----------
    tpr, fpr : array-like of float, shape (K,)
        ROC points (for instance :attr:`MembershipMetrics.roc`), each in [0, 1].
    n_members, n_non_members : int
        Members and non-members the rates were measured on.
    delta : float, default 0.0
        The delta of the (epsilon, delta)-DP null hypothesis.
    confidence : float, default 0.95
        Joint confidence of the intervals.

    Returns
    -------
    float

    Raises
    ------
    DataError
        Lengths differ, a rate is outside [0, 1], or a count is below 1.
    ValueError
        ``confidence`` outside (0, 1) or ``delta`` outside [0, 1).

    References
    ----------
    .. [1] M. Jagielski, J. Ullman, A. Oprea, "Auditing Differentially Private Machine
       Learning: How Private is Private SGD?", NeurIPS 2020.
    """
    t = np.atleast_1d(np.asarray(tpr, dtype=float))
    f = np.atleast_1d(np.asarray(fpr, dtype=float))
    if t.ndim != 1 or t.shape != f.shape or len(t) == 0:
        raise DataError(f"tpr {t.shape} and fpr {f.shape} must be 1-d, non-empty and alike")
    if not (np.all((t >= 0) & (t <= 1)) and np.all((f >= 0) & (f <= 1))):
        raise DataError("tpr and fpr must lie in [0, 1]")
    if n_members < 1 or n_non_members < 1:
        raise DataError(
            f"need at least one member and one non-member, got {n_members} and {n_non_members}"
        )
    check_confidence_delta(confidence, delta)
    level = (1.0 - confidence) / (2 * len(t))
    tp = np.rint(t * n_members)
    fp = np.rint(f * n_non_members)
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr_lo = np.where(tp > 0, stats.beta.ppf(level, tp, n_members - tp + 1), 0.0)
        fpr_hi = np.where(
            fp < n_non_members, stats.beta.ppf(1 - level, fp + 1, n_non_members - fp), 1.0
        )
        first = np.log(np.maximum(tpr_lo - delta, 0.0) / fpr_hi)
        second = np.log(np.maximum(1.0 - fpr_hi - delta, 0.0) / (1.0 - tpr_lo))
    candidates = np.concatenate([first, second])
    candidates = candidates[np.isfinite(candidates)]
    return float(max(0.0, candidates.max(initial=0.0)))
