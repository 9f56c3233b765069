"""Empirical privacy audit: a lower bound on epsilon from one training run.

A differential-privacy guarantee is an *upper* bound on what a training algorithm leaks; an
audit attacks the trained model and turns the attack's success into a *lower* bound that holds
with a stated confidence. If the lower bound exceeds the claimed epsilon, the claim (or its
implementation) is wrong; if it is far below, the claim may be loose or the attack weak.

* :func:`epsilon_lower_bound` is the one-run audit of Steinke, Nasr & Jagielski (2023) [1]_:
  ``m`` audit rows are each put in the training set independently with probability 1/2, one
  model is trained, and an attacker who guesses "member" for its ``k+`` highest scores and
  "non-member" for its ``k-`` lowest cannot be right much more often than epsilon-DP allows.
  The bound is rigorous for a single model: the randomness is the inclusion coin flips.
* :func:`epsilon_from_roc` is the older bound of Jagielski et al. (2020) [2]_ from one
  threshold's TPR and FPR with Clopper-Pearson intervals. It treats rows as independent
  trials, which is only heuristic when every row is scored by the same model.
* :func:`privacy_audit` runs the whole experiment on real rows: draw the audit rows, flip the
  coins, train with ``make_model``, score with the loss attack or offline LiRA, and report the
  membership metrics, the one-run bound and the claimed epsilon side by side.

References
----------
.. [1] T. Steinke, M. Nasr, M. Jagielski, "Privacy Auditing with One (1) Training Run",
   Advances in Neural Information Processing Systems 36 (NeurIPS), 2023. arXiv:2305.08846.
.. [2] M. Jagielski, J. Ullman, A. Oprea, "Auditing Differentially Private Machine Learning:
   How Private is Private SGD?", NeurIPS 2020.
.. [3] N. Carlini, S. Chien, M. Nasr, S. Song, A. Terzis, F. Tramèr, "Membership Inference
   Attacks From First Principles", IEEE S&P 2022.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from scipy import optimize, stats

from mlwarden.attacks._membership import (
    GLOBAL_VARIANCE_BELOW,
    _labels,
    _rows,
    lira_scores,
    logit_confidence,
    membership_metrics,
)
from mlwarden.attacks._result import AttackResult
from mlwarden.errors import DataError, ParameterError
from mlwarden.models import SklearnAdapter
from mlwarden.models import claimed_delta as _claimed_delta
from mlwarden.models import claimed_epsilon as _claimed_epsilon

__all__ = [
    "GUESS_FRACTIONS",
    "EpsilonLowerBound",
    "PrivacyAuditResult",
    "epsilon_from_roc",
    "epsilon_lower_bound",
    "one_run_p_value",
    "privacy_audit",
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


class PrivacyAuditResult(AttackResult):
    """The result of :func:`privacy_audit`: membership metrics, epsilon bound, claimed epsilon.

    ``success_rate`` is the balanced accuracy at the best threshold (as in
    :class:`~mlwarden.attacks.MembershipResult`); ``epsilon_lower_bound`` is the one-run bound
    (``bound`` has its details); ``claimed_epsilon`` is what the model promises (None: no
    claim). A sound DP implementation keeps ``epsilon_lower_bound <= claimed_epsilon`` except
    with probability ``1 - confidence``. ``n_train`` is the target's training-set size (base
    rows plus included audit rows); ``test_accuracy`` is on held-out rows (None without any);
    ``roc`` is the attack's ``(fpr, tpr)`` curve (as :attr:`MembershipMetrics.roc`).
    """

    variant: str
    n_audit: int
    n_included: int
    n_train: int
    n_reference: int
    auc: float
    auc_ci: tuple[float, float]
    tpr_at_fpr: dict[float, float]
    tpr_at_fpr_ci: dict[float, tuple[float, float]]
    epsilon_lower_bound: float
    bound: EpsilonLowerBound
    claimed_epsilon: float | None
    test_accuracy: float | None
    roc: list[tuple[float, float]] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------
# The one-run bound


def _check_confidence_delta(confidence: float, delta: float) -> None:
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
    _check_confidence_delta(confidence, delta)
    grid = _guess_grid(m, guesses)
    significance = (1.0 - confidence) / len(grid)

    tiebreak = np.random.default_rng(seed).random(m)
    order = np.lexsort((tiebreak, values))  # ascending score
    ranked = labels[order]
    members_top = np.concatenate([[0], np.cumsum(ranked[::-1])])  # members among top k
    non_members_bottom = np.concatenate([[0], np.cumsum(~ranked)])  # non-members, bottom k

    best = EpsilonLowerBound(
        epsilon=0.0,
        delta=delta,
        confidence=confidence,
        n_audit=m,
        n_hypotheses=len(grid),
        k_pos=0,
        k_neg=0,
        n_guesses=0,
        n_correct=0,
    )
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
    _check_confidence_delta(confidence, delta)
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


# --------------------------------------------------------------------------------------------
# The experiment


def privacy_audit(
    make_model: Callable[[], Any],
    X: Any,
    y: Any,
    *,
    n_audit: int,
    attack: Literal["loss", "lira"] = "loss",
    n_train: int = 0,
    n_test: int = 0,
    n_reference: int = 4,
    n_population: int | None = None,
    population: tuple[Any, Any] | None = None,
    test: tuple[Any, Any] | None = None,
    claimed_epsilon: float | None = None,
    delta: float | None = None,
    confidence: float = 0.95,
    guesses: Sequence[tuple[int, int]] | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> PrivacyAuditResult:
    """Audit a training procedure in one run: membership metrics and an epsilon lower bound.

    The rows of ``X`` are shuffled (seeded) and split, disjointly, into ``n_audit`` audit rows,
    ``n_train`` base training rows, ``n_test`` test rows and ``n_population`` population rows
    (LiRA's reference data). Each audit row is included in the training set independently
    with probability 1/2; the target is ``make_model()`` fitted on the base rows plus the
    included audit rows (in random order). The audit rows are then scored through
    :class:`~mlwarden.models.SklearnAdapter`:

    * ``attack="loss"``: :func:`~mlwarden.attacks.logit_confidence` of the target on each row
      (the loss attack, Yeom et al. 2018);
    * ``attack="lira"``: offline LiRA [3]_, ``n_reference`` reference models fitted by
      ``make_model`` on random halves of the population.

    The scores give :func:`~mlwarden.attacks.membership_metrics` (AUC, TPR at low FPR) and the
    one-run bound :func:`epsilon_lower_bound` [1]_. Audit rows are real rows of the data, not
    crafted canaries, so the bound reflects an average-case attacker and is usually far below
    the worst case a DP proof covers.

    Parameters
    ----------
    make_model : callable
        Returns a fresh unfitted estimator with ``fit`` and ``predict_proba``.
    X, y : array-like
        Rows (array or DataFrame, whatever the model takes) and labels.
    n_audit : int
        Audit rows (``m``); a few hundred to thousands. About half end up in training.
    attack : {"loss", "lira"}, default "loss"
        The membership score.
    n_train : int, default 0
        Base training rows, always included.
    n_test : int, default 0
        Held-out rows for ``test_accuracy``.
    n_reference : int, default 4
        LiRA reference models (ignored by the loss attack).
    n_population : int or None
        LiRA population rows; None: ``2 * (n_train + n_audit // 2)``, so each reference model
        trains on about as many rows as the target.
    population : (X, y) or None
        LiRA's population rows given apart (for instance a held-out split): all of them are
        used and none is taken from ``X``; ``n_population`` must then be None.
    test : (X, y) or None
        Held-out rows given apart for ``test_accuracy``; ``n_test`` must then be 0.
    claimed_epsilon : float or None
        The epsilon to report beside the bound; None reads it off the fitted model
        (:func:`mlwarden.models._dp.claimed_epsilon`; None for non-DP models).
    delta : float or None
        The delta of the bound's null hypothesis; None: the fitted model's own delta
        (:func:`mlwarden.models._dp.claimed_delta`), 0 for a model that claims none.
    confidence, guesses : float, sequence or None
        Passed to :func:`epsilon_lower_bound`.
    n_bootstrap : int, default 200
        Bootstrap resamples for the metric intervals.
    seed : int, default 0
        Seeds the split, the coin flips, the reference halves and the bootstrap.

    Returns
    -------
    PrivacyAuditResult

    Raises
    ------
    DataError
        Too few rows for the requested split, mismatched labels, or coin flips that left no
        member or no non-member.
    ValueError
        Bad ``attack``, counts, ``confidence`` or ``delta``.

    References
    ----------
    .. [1] Steinke, Nasr & Jagielski, "Privacy Auditing with One (1) Training Run", NeurIPS 2023.
    .. [2] Yeom et al., "Privacy Risk in Machine Learning", CSF 2018.
    .. [3] Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022.
    """
    started = time.perf_counter()
    if attack not in ("loss", "lira"):
        raise ParameterError(f"attack must be 'loss' or 'lira', got {attack!r}")
    if n_audit < 2 or n_train < 0 or n_test < 0:
        raise ParameterError(
            f"need n_audit >= 2 and n_train, n_test >= 0; got {n_audit}, {n_train}, {n_test}"
        )
    if attack == "lira" and n_reference < 1:
        raise ParameterError(f"LiRA needs n_reference >= 1, got {n_reference}")
    if population is not None and n_population is not None:
        raise ParameterError("give population rows or n_population, not both")
    if test is not None and n_test:
        raise ParameterError("give test rows or n_test, not both")
    _check_confidence_delta(confidence, 0.0 if delta is None else delta)
    n_rows = len(X)
    labels_all = _labels(y, "y", n_rows)
    n_pop = 0
    if attack == "lira" and population is None:
        n_pop = 2 * (n_train + n_audit // 2) if n_population is None else n_population
        if n_pop < 2:
            raise ParameterError(f"n_population must be at least 2, got {n_pop}")
    if population is not None:
        X_pop, y_pop = population[0], _labels(population[1], "population y", len(population[0]))
        if attack == "lira" and len(y_pop) < 2:
            raise DataError(f"LiRA needs at least 2 population rows, got {len(y_pop)}")
    if test is not None:
        X_test, y_test = test[0], _labels(test[1], "test y", len(test[0]))
    needed = n_audit + n_train + n_pop + n_test
    if needed > n_rows:
        raise DataError(
            f"the audit needs {needed} rows (audit {n_audit}, train {n_train}, population "
            f"{n_pop}, test {n_test}) but X has {n_rows}"
        )

    rng = np.random.default_rng(seed)
    order = rng.permutation(n_rows)
    audit, rest = order[:n_audit], order[n_audit:]
    base, rest = rest[:n_train], rest[n_train:]
    test_idx, rest = rest[:n_test], rest[n_test:]  # before the population: same rows either way
    population_idx = rest[:n_pop]
    included = rng.random(n_audit) < 0.5
    if included.all() or not included.any():
        raise DataError(
            f"the coin flips put {int(included.sum())} of {n_audit} audit rows in training; "
            "use more audit rows or another seed"
        )

    train_idx = rng.permutation(np.concatenate([base, audit[included]]))
    model = make_model()
    model.fit(_rows(X, train_idx), labels_all[train_idx])
    target = SklearnAdapter(model)

    X_audit, y_audit = _rows(X, audit), labels_all[audit]
    if population is None:
        X_pop, y_pop = _rows(X, population_idx), labels_all[population_idx]
    if attack == "loss":
        scores = logit_confidence(target.predict_proba(X_audit), target.classes_, y_audit)
        variant = "loss"
    else:
        # Reference models train on population halves only, disjoint from the audit rows, so
        # they depend on nothing the coin flips decide, as the one-run theorem needs.
        scores = lira_scores(
            target,
            X_audit,
            y_audit,
            X_pop,
            y_pop,
            make_model,
            n_reference=n_reference,
            online=False,
            pooled=n_reference < GLOBAL_VARIANCE_BELOW,
            rng=rng,
        )
        variant = "lira-offline"
    queries = target.queries

    if delta is None:
        delta = _claimed_delta(model) or 0.0
    metrics = membership_metrics(included, scores, n_bootstrap=n_bootstrap, seed=seed)
    bound = epsilon_lower_bound(
        scores, included, delta=delta, confidence=confidence, guesses=guesses, seed=seed
    )
    claimed = _claimed_epsilon(model) if claimed_epsilon is None else float(claimed_epsilon)
    if test is None and n_test > 0:
        X_test, y_test = _rows(X, test_idx), labels_all[test_idx]
    accuracy = None
    if test is not None or n_test > 0:
        predicted = np.asarray(model.predict(X_test))
        accuracy = float(np.mean(predicted == y_test))

    return PrivacyAuditResult(
        attack="privacy_audit",
        n_points=n_audit,
        success_rate=metrics.balanced_accuracy,
        queries=queries,
        budget=None,
        wall_time_s=time.perf_counter() - started,
        params={
            "attack": attack,
            "n_audit": n_audit,
            "n_train": n_train,
            "n_test": n_test,
            "n_reference": n_reference if attack == "lira" else 0,
            "n_population": len(y_pop) if attack == "lira" else 0,
            "delta": delta,
            "confidence": confidence,
            "seed": seed,
        },
        variant=variant,
        n_audit=n_audit,
        n_included=int(included.sum()),
        n_train=len(train_idx),
        n_reference=n_reference if attack == "lira" else 0,
        auc=metrics.auc,
        auc_ci=metrics.auc_ci,
        tpr_at_fpr=metrics.tpr_at_fpr,
        tpr_at_fpr_ci=metrics.tpr_at_fpr_ci,
        epsilon_lower_bound=bound.epsilon,
        bound=bound,
        claimed_epsilon=claimed,
        test_accuracy=accuracy,
        roc=metrics.roc,
    )
