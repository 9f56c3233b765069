"""Empirical privacy audit: a lower bound on epsilon from one training run.

A differential-privacy guarantee is an *upper* bound on what a training algorithm leaks; an
audit attacks the trained model and turns the attack's success into a *lower* bound that holds
with a stated confidence. If the lower bound exceeds the claimed epsilon, the claim (or its
implementation) is wrong; if it is far below, the claim may be loose or the attack weak.

The bounds are in :mod:`._dp_bounds`: the one-run bound of Steinke, Nasr & Jagielski (2023)
[1]_, rigorous for a single model, and the ROC bound of Jagielski et al. (2020).

:func:`privacy_audit` runs the whole experiment on real rows: draw the audit rows, flip the
coins, train with ``make_model``, score with the loss attack or offline LiRA [2]_, and report the
membership metrics, the one-run bound and the claimed epsilon side by side.

References
----------
.. [1] T. Steinke, M. Nasr, M. Jagielski, "Privacy Auditing with One (1) Training Run",
   Advances in Neural Information Processing Systems 36 (NeurIPS), 2023. arXiv:2305.08846.
.. [2] N. Carlini, S. Chien, M. Nasr, S. Song, A. Terzis, F. Tramèr, "Membership Inference
   Attacks From First Principles", IEEE S&P 2022.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field

from mlwarden.attacks._dp_bounds import (
    EpsilonLowerBound,
    check_confidence_delta,
    epsilon_lower_bound,
)
from mlwarden.attacks._membership import (
    GLOBAL_VARIANCE_BELOW,
    _labels,
    _rows,
    lira_scores,
    logit_confidence,
)
from mlwarden.attacks._membership_metrics import membership_metrics
from mlwarden.attacks._result import AttackResult
from mlwarden.errors import DataError, ParameterError
from mlwarden.models import SklearnAdapter
from mlwarden.models import claimed_delta as _claimed_delta
from mlwarden.models import claimed_epsilon as _claimed_epsilon

__all__ = ["PrivacyAuditResult", "audit_result", "held_out_accuracy", "privacy_audit"]


class PrivacyAuditResult(AttackResult):
    """The result of :func:`privacy_audit`: membership metrics, epsilon bound, claimed epsilon.

    ``success_rate`` is the balanced accuracy at the best threshold (as in
    :class:`~mlwarden.attacks.MembershipResult`); ``epsilon_lower_bound`` is the one-run bound
    (``bound`` has its details); ``claimed_epsilon`` is what the model promises (None: no
    claim). A sound DP implementation keeps ``epsilon_lower_bound <= claimed_epsilon`` except
    with probability ``1 - confidence``. ``n_train`` is the target's training-set size (base
    rows plus included audit rows); ``test_accuracy`` is on held-out rows (None without any);
    ``roc`` is the attack's ``(fpr, tpr)`` curve (as :attr:`MembershipMetrics.roc`). From
    :func:`~mlwarden.attacks.dp_sgd_canary_audit` (``variant`` ``"white-box-dirac"``):
    ``n_audit`` counts gradient canaries and ``n_train`` the training rows.
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
    check_confidence_delta(confidence, 0.0 if delta is None else delta)
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
        _labels(test[1], "test y", len(test[0]))  # refused before any training
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
    bound = epsilon_lower_bound(
        scores, included, delta=delta, confidence=confidence, guesses=guesses, seed=seed
    )
    claimed = _claimed_epsilon(model) if claimed_epsilon is None else float(claimed_epsilon)
    if test is None and n_test > 0:
        test = (_rows(X, test_idx), labels_all[test_idx])
    return audit_result(
        variant=variant,
        started=started,
        included=included,
        scores=scores,
        bound=bound,
        claimed_epsilon=claimed,
        accuracy=None if test is None else held_out_accuracy(model, test),
        n_train=len(train_idx),
        n_reference=n_reference if attack == "lira" else 0,
        queries=queries,
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
        n_bootstrap=n_bootstrap,
    )


def held_out_accuracy(model: Any, test: tuple[Any, Any]) -> float:
    """Accuracy of a fitted estimator on held-out ``(X, y)``."""
    y_test = _labels(test[1], "test y", len(test[0]))
    return float(np.mean(np.asarray(model.predict(test[0])) == y_test))


def audit_result(
    *,
    variant: str,
    started: float,
    included: np.ndarray,
    scores: np.ndarray,
    bound: EpsilonLowerBound,
    claimed_epsilon: float | None,
    accuracy: float | None,
    n_train: int,
    n_reference: int,
    queries: int,
    params: dict[str, Any],
    n_bootstrap: int,
) -> PrivacyAuditResult:
    """Membership metrics of the audit scores, with the bound, as a :class:`PrivacyAuditResult`."""
    metrics = membership_metrics(included, scores, n_bootstrap=n_bootstrap, seed=params["seed"])
    return PrivacyAuditResult(
        attack="privacy_audit",
        n_points=len(included),
        success_rate=metrics.balanced_accuracy,
        queries=queries,
        budget=None,
        wall_time_s=time.perf_counter() - started,
        params=params,
        variant=variant,
        n_audit=len(included),
        n_included=int(included.sum()),
        n_train=n_train,
        n_reference=n_reference,
        auc=metrics.auc,
        auc_ci=metrics.auc_ci,
        tpr_at_fpr=metrics.tpr_at_fpr,
        tpr_at_fpr_ci=metrics.tpr_at_fpr_ci,
        epsilon_lower_bound=bound.epsilon,
        bound=bound,
        claimed_epsilon=claimed_epsilon,
        test_accuracy=accuracy,
        roc=metrics.roc,
    )
