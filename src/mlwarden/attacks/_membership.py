"""Membership inference: a loss-threshold baseline and LiRA, with ROC metrics at low FPR.

Two attacks answer "was this row in the model's training set?":

* :func:`loss_threshold_attack` (Yeom et al. 2018): a row the model is unusually confident on is
  probably a member. No reference models; one threshold for every row.
* :func:`lira` (Carlini et al. 2022): the Likelihood Ratio Attack. Reference ("shadow") models
  trained with and without each row calibrate, per row, how confident a model is on it anyway,
  so easy rows no longer look like members and hard, memorised rows stand out. This is what
  makes the attack work at low false-positive rates, where the baseline is near chance.

Both score every row with the logit-scaled confidence on the true label (:func:`logit_confidence`)
and are evaluated by :func:`membership_metrics`: AUC, TPR at 1% and 0.1% FPR (interpolated from
the ROC), seeded bootstrap 95% confidence intervals and a log-spaced ROC for a log-log plot.

References
----------
.. [1] N. Carlini, S. Chien, M. Nasr, S. Song, A. Terzis, F. Tramèr, "Membership Inference
   Attacks From First Principles", IEEE Symposium on Security and Privacy, 2022.
.. [2] S. Yeom, I. Giacomelli, M. Fredrikson, S. Jha, "Privacy Risk in Machine Learning:
   Analyzing the Connection to Overfitting", IEEE Computer Security Foundations Symposium, 2018.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

from mlwarden._tasks import task_map
from mlwarden.attacks._membership_metrics import FPR_LEVELS, membership_metrics
from mlwarden.attacks._result import AttackResult
from mlwarden.errors import DataError
from mlwarden.models import ModelAdapter

__all__ = [
    "PHI_EPSILON",
    "MembershipResult",
    "check_reference_attack",
    "lira",
    "lira_scores",
    "logit_confidence",
    "loss_threshold_attack",
    "membership_result",
    "reference_proba",
    "target_proba",
]

#: Probabilities are clipped to ``[PHI_EPSILON, 1 - PHI_EPSILON]`` before the logit, so that a
#: model certain of a row (``p = 1`` exactly, common for trees and forests) scores a finite
#: ``log((1 - eps) / eps)`` of about 13.8 rather than infinity. The clip bounds the tails of the
#: per-row Gaussians LiRA fits; it is far below the smallest non-zero probability a forest of up
#: to a million trees can output, so it only touches exact 0 and 1.
PHI_EPSILON = 1e-6

#: Below this many reference models LiRA pools the variance over all rows (the paper's advice
#: for few shadow models: per-row variances from a handful of samples are too noisy).
GLOBAL_VARIANCE_BELOW = 64
_MIN_STD = 1e-3


class MembershipResult(AttackResult):
    """A membership-inference attack's result.

    ``success_rate`` is the balanced accuracy at the best single threshold on the attack's
    scores (``(TPR + 1 - FPR) / 2``, maximised over thresholds): 0.5 is chance, 1 is perfect.
    It is an optimistic, in-sample figure (the threshold is chosen with the labels); the
    low-FPR TPRs are the figures to judge privacy by [1]_. ``queries`` counts the rows sent to
    the *target* model only; reference models are the attacker's own and cost no queries.
    ``variant`` is ``"loss"``, ``"lira-offline"`` or ``"lira-online"``; ``n_reference`` is 0
    for the loss attack.

    References
    ----------
    .. [1] Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022.
    """

    auc: float
    auc_ci: tuple[float, float]
    tpr_at_fpr: dict[float, float]
    tpr_at_fpr_ci: dict[float, tuple[float, float]]
    roc: list[tuple[float, float]]
    n_members: int
    n_non_members: int
    n_reference: int
    variant: str


# --------------------------------------------------------------------------------------------
# Scores


def _true_label_proba(proba: np.ndarray, classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Probability each row's true label gets; 0 for a label the model never saw."""
    lookup = {label: i for i, label in enumerate(classes.tolist())}
    index = np.array([lookup.get(label, -1) for label in y.tolist()], dtype=int)
    out = np.zeros(len(y), dtype=float)
    known = index >= 0
    out[known] = proba[np.flatnonzero(known), index[known]]
    return out


def logit_confidence(proba: np.ndarray, classes: Any, y: Any) -> np.ndarray:
    """LiRA's score: the logit of the confidence on the true label.

    ``phi = log(p_y / (1 - p_y))``, with ``p_y`` clipped to ``[PHI_EPSILON, 1 - PHI_EPSILON]``
    (see :data:`PHI_EPSILON`). On this scale the confidence of a model on one row, over models
    trained on random data sets, is close to Gaussian [1]_. It is a monotone function of the
    cross-entropy loss ``-log p_y``, so thresholding it is the loss attack [2]_.

    Parameters
    ----------
    proba : ndarray of shape (n, n_classes)
        Class probabilities.
    classes : array-like of shape (n_classes,)
        Labels in the column order of ``proba``.
    y : array-like of shape (n,)
        True labels.

    Returns
    -------
    ndarray of shape (n,)

    References
    ----------
    .. [1] Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022, §IV.
    .. [2] Yeom et al., "Privacy Risk in Machine Learning", CSF 2018.
    """
    p = _true_label_proba(np.asarray(proba, dtype=float), np.asarray(classes), np.asarray(y))
    return _phi(p)


def target_proba(model: ModelAdapter, X: Any, y: np.ndarray) -> np.ndarray:
    """The target model's probability of each row's true label (one query per row)."""
    proba = np.asarray(model.predict_proba(X), dtype=float)
    return _true_label_proba(proba, np.asarray(model.classes_), y)


def _target_scores(model: ModelAdapter, X: Any, y: np.ndarray) -> np.ndarray:
    return logit_confidence(model.predict_proba(X), model.classes_, y)


def membership_result(
    *,
    attack: str,
    variant: str,
    scores: np.ndarray,
    labels: np.ndarray,
    model: ModelAdapter,
    queries_before: int,
    started: float,
    n_reference: int,
    params: dict[str, Any],
    n_bootstrap: int,
    seed: int,
    fpr_levels: Sequence[float] = FPR_LEVELS,
) -> MembershipResult:
    """Wrap one attack's scores into a :class:`MembershipResult` (metrics, examples, cost)."""
    metrics = membership_metrics(
        labels, scores, n_bootstrap=n_bootstrap, seed=seed, fpr_levels=fpr_levels
    )
    top = np.argsort(-scores, kind="stable")[:5]
    examples = [
        {"index": int(i), "score": float(scores[i]), "is_member": bool(labels[i])} for i in top
    ]
    budget = getattr(model, "budget", None)
    return MembershipResult(
        attack=attack,
        n_points=len(scores),
        success_rate=metrics.balanced_accuracy,
        queries=model.queries - queries_before,
        budget=budget if isinstance(budget, int) else None,
        wall_time_s=time.perf_counter() - started,
        params=params,
        examples=examples,
        auc=metrics.auc,
        auc_ci=metrics.auc_ci,
        tpr_at_fpr=metrics.tpr_at_fpr,
        tpr_at_fpr_ci=metrics.tpr_at_fpr_ci,
        roc=metrics.roc,
        n_members=metrics.n_members,
        n_non_members=metrics.n_non_members,
        n_reference=n_reference,
        variant=variant,
    )


# --------------------------------------------------------------------------------------------
# Data helpers (numpy arrays or pandas DataFrames, as the caller's models expect)


def _rows(X: Any, idx: np.ndarray) -> Any:
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    return np.asarray(X)[idx]


def _stack(parts: Sequence[Any]) -> Any:
    if all(hasattr(part, "iloc") for part in parts):
        import pandas as pd

        return pd.concat(list(parts), axis=0, ignore_index=True)
    return np.concatenate([np.asarray(part) for part in parts], axis=0)


def _labels(y: Any, name: str, n: int) -> np.ndarray:
    values = np.asarray(y)
    if values.ndim != 1 or len(values) != n:
        raise DataError(f"{name} must be 1-d with one label per row ({n}), got {values.shape}")
    return values


def check_reference_attack(
    name: str,
    X_target: Any,
    y_target: Any,
    is_member: Any,
    population_X: Any,
    population_y: Any,
    n_reference: int,
    online: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check a reference-model attack's inputs; return target labels, flags, population labels."""
    n_target = len(X_target)
    y_t = _labels(y_target, "y_target", n_target)
    labels = np.asarray(is_member, dtype=bool)
    if labels.shape != (n_target,):
        raise DataError(f"is_member must have one flag per target row ({n_target})")
    y_pop = _labels(population_y, "population_y", len(population_X))
    if len(y_pop) < 2:
        raise DataError("the population needs at least 2 rows to draw halves from")
    minimum = 2 if online else 1
    if n_reference < minimum or (online and n_reference % 2):
        raise DataError(
            f"n_reference must be {'an even number >= 2' if online else '>= 1'} "
            f"for {'online' if online else 'offline'} {name}, got {n_reference}"
        )
    return y_t, labels, y_pop


# --------------------------------------------------------------------------------------------
# Attacks


def loss_threshold_attack(
    model: ModelAdapter,
    members_X: Any,
    members_y: Any,
    non_members_X: Any,
    non_members_y: Any,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    fpr_levels: Sequence[float] = FPR_LEVELS,
) -> MembershipResult:
    """The loss-threshold membership attack: members have low loss (Yeom et al. 2018).

    Every row is scored by :func:`logit_confidence`, a monotone function of ``-loss``, and one
    global threshold is swept over the scores; there are no reference models. This is the
    threshold attack of TensorFlow Privacy's membership-inference module, and the baseline
    LiRA is measured against [1]_.

    Parameters
    ----------
    model : ModelAdapter
        The target model; one query per row, counted through the adapter.
    members_X, members_y : array-like
        Rows that were in the model's training set, and their labels.
    non_members_X, non_members_y : array-like
        Rows that were not, and their labels.
    n_bootstrap, seed : int
        Bootstrap resamples and seed for the confidence intervals.
    fpr_levels : sequence of float
        FPRs at which to report the TPR (see :func:`membership_metrics`).

    Returns
    -------
    MembershipResult
        ``variant="loss"``, ``n_reference=0``; example indices count members first.

    References
    ----------
    .. [1] Carlini et al., "Membership Inference Attacks From First Principles", S&P 2022.
    .. [2] Yeom et al., "Privacy Risk in Machine Learning", CSF 2018.
    """
    started = time.perf_counter()
    before = model.queries
    y_in = _labels(members_y, "members_y", len(members_X))
    y_out = _labels(non_members_y, "non_members_y", len(non_members_X))
    scores = np.concatenate(
        [_target_scores(model, members_X, y_in), _target_scores(model, non_members_X, y_out)]
    )
    labels = np.concatenate([np.ones(len(y_in), bool), np.zeros(len(y_out), bool)])
    return membership_result(
        attack="loss_threshold",
        variant="loss",
        scores=scores,
        labels=labels,
        model=model,
        queries_before=before,
        started=started,
        n_reference=0,
        params={"score": "logit_confidence", "phi_epsilon": PHI_EPSILON},
        n_bootstrap=n_bootstrap,
        seed=seed,
        fpr_levels=fpr_levels,
    )


def _gaussian_fit(phi: np.ndarray, mask: np.ndarray, pooled: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-row mean and std of ``phi[mask]`` along axis 0 (reference models).

    ``pooled``: one std for all rows, from the within-row deviations pooled over rows.
    """
    count = mask.sum(axis=0)
    if np.any(count == 0):
        raise DataError("every target row needs at least one reference model of each kind")
    mean = np.where(mask, phi, 0.0).sum(axis=0) / count
    dev2 = np.where(mask, (phi - mean) ** 2, 0.0)
    if pooled:
        dof = max(int(count.sum() - len(count)), 1)
        std = np.full(phi.shape[1], np.sqrt(dev2.sum() / dof))
    else:
        std = np.sqrt(dev2.sum(axis=0) / np.maximum(count - 1, 1))
    return mean, np.maximum(std, _MIN_STD)


def reference_proba(
    X_target: Any,
    y_t: np.ndarray,
    population_X: Any,
    y_pop: np.ndarray,
    make_model: Callable[[], Any],
    *,
    n_reference: int,
    online: bool,
    rng: np.random.Generator,
    on_population: bool = False,
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray | None]:
    """Train reference models as LiRA does and read their true-label probabilities.

    Each of ``n_reference`` models is ``make_model()`` fitted on a random half of the population
    (online: plus each target row in exactly half of the models). Returns ``keep`` (reference x
    target: the row was in that model's training set), the population halves, the models'
    probabilities on the target rows (reference x target) and, with ``on_population``, on the
    population rows (reference x population), else None.
    """
    n_target, n_pop = len(y_t), len(y_pop)
    if online:
        # Each target row is IN for exactly half of the reference models.
        ranks = np.argsort(rng.random((n_reference, n_target)), axis=0)
        keep = ranks < n_reference // 2
    else:
        keep = np.zeros((n_reference, n_target), dtype=bool)
    # Every half is drawn before any model is fitted, in the order a serial loop draws them,
    # so the scores do not depend on where (or in which order) the models are trained.
    halves = [rng.permutation(n_pop)[: n_pop // 2] for _ in range(n_reference)]

    def fit_and_read(r: int) -> tuple[np.ndarray, np.ndarray | None]:
        X_fit, y_fit = _rows(population_X, halves[r]), y_pop[halves[r]]
        if online:
            chosen = np.flatnonzero(keep[r])
            X_fit = _stack([X_fit, _rows(X_target, chosen)])
            y_fit = np.concatenate([y_fit, y_t[chosen]])
        reference = make_model()
        reference.fit(X_fit, y_fit)
        classes = np.asarray(reference.classes_)
        on_target = _true_label_proba(np.asarray(reference.predict_proba(X_target)), classes, y_t)
        if not on_population:
            return on_target, None
        proba_pop = np.asarray(reference.predict_proba(population_X))
        return on_target, _true_label_proba(proba_pop, classes, y_pop)

    read = task_map(fit_and_read, range(n_reference))
    target_p = np.stack([t for t, _ in read])
    pop_p = np.stack([p for _, p in read if p is not None]) if on_population else None
    return keep, halves, target_p, pop_p


def _phi(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, PHI_EPSILON, 1.0 - PHI_EPSILON)
    return np.asarray(np.log(p) - np.log1p(-p))


def lira_scores(
    model: ModelAdapter,
    X_target: Any,
    y_t: np.ndarray,
    population_X: Any,
    y_pop: np.ndarray,
    make_model: Callable[[], Any],
    *,
    n_reference: int,
    online: bool,
    pooled: bool,
    rng: np.random.Generator,
) -> np.ndarray:
    """LiRA's per-row scores (see :func:`lira`): reference models on population halves drawn
    from ``rng`` (plus, online, each target row in half of them), then the Gaussian test."""
    target_phi = _target_scores(model, X_target, y_t)
    keep, _, ref_p, _ = reference_proba(
        X_target, y_t, population_X, y_pop, make_model,
        n_reference=n_reference, online=online, rng=rng,
    )  # fmt: skip
    ref_phi = _phi(ref_p)

    mu_out, sd_out = _gaussian_fit(ref_phi, ~keep, pooled)
    if online:
        mu_in, sd_in = _gaussian_fit(ref_phi, keep, pooled)
        scores = stats.norm.logpdf(target_phi, mu_in, sd_in) - stats.norm.logpdf(
            target_phi, mu_out, sd_out
        )
    else:
        scores = -stats.norm.logsf(target_phi, mu_out, sd_out)
    return np.asarray(scores, dtype=float)


def lira(
    model: ModelAdapter,
    X_target: Any,
    y_target: Any,
    is_member: Any,
    population_X: Any,
    population_y: Any,
    make_model: Callable[[], Any],
    *,
    n_reference: int = 8,
    online: bool = False,
    global_variance: bool | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
    fpr_levels: Sequence[float] = FPR_LEVELS,
) -> MembershipResult:
    """The Likelihood Ratio Attack (LiRA) of Carlini et al. (2022).

    ``n_reference`` reference models, each ``make_model()`` fitted on a random half of the
    population data, are queried on every target row ``x`` for ``phi`` (:func:`logit_confidence`).
    They are trained through the current task runner (``mlwarden._tasks.use_runner``: in this
    process, local worker processes or Ray tasks), with the same scores on each.

    * Offline (``online=False``): the target rows are in no reference model's training set.
      A Gaussian ``N(mu_out(x), sigma_out^2)`` is fitted to the reference models' ``phi`` on
      ``x``; the score is the one-sided test ``-log(1 - CDF_out(phi_target(x)))``: how far
      above what models that never saw ``x`` would say the target model's confidence lies.
    * Online (``online=True``): each target row is added to the training set of exactly half
      of the reference models (chosen at random per row), so each reference set is a
      population half plus about half the target rows. Gaussians IN and OUT are fitted per
      row and the score is the log-likelihood ratio
      ``log N(phi; mu_in, sigma_in^2) - log N(phi; mu_out, sigma_out^2)``.

    With fewer than 64 reference models the variance is pooled over all rows (the paper's
    "global variance", more reliable with few shadow models); only the means are per row.

    Parameters
    ----------
    model : ModelAdapter
        The target model; queried once per target row, counted through the adapter.
    X_target, y_target : array-like
        The candidate rows and their labels.
    is_member : array-like of bool
        Ground truth, used **only** to evaluate the scores (the attack never reads it).
    population_X, population_y : array-like
        Data from the same distribution, **disjoint from the target model's training set**
        (the caller guarantees it; if members leaked into it, offline reference models would
        train on members and underestimate their scores). It should not contain the target rows.
    make_model : callable
        Returns a fresh unfitted estimator with ``fit`` and ``predict_proba`` and
        ``classes_``, ideally the target's architecture and hyperparameters.
    n_reference : int, default 8
        Reference models. 4 is a quick (CI) setting; the paper uses 64 to 256. Online needs
        an even number of at least 2.
    online : bool, default False
        Online (IN and OUT models) or offline (OUT models only) variant.
    global_variance : bool or None
        Pool the variance over rows; None (default): pooled below 64 reference models.
    n_bootstrap, seed : int
        Bootstrap resamples for the intervals; ``seed`` also draws the reference data splits.
    fpr_levels : sequence of float
        FPRs at which to report the TPR (see :func:`membership_metrics`).

    Returns
    -------
    MembershipResult
        ``variant`` is ``"lira-offline"`` or ``"lira-online"``.

    Raises
    ------
    DataError
        On mismatched lengths, too few reference models, or a population too small to halve.

    References
    ----------
    .. [1] N. Carlini, S. Chien, M. Nasr, S. Song, A. Terzis, F. Tramèr, "Membership Inference
       Attacks From First Principles", IEEE S&P 2022, §IV (online, offline, global variance).
    """
    started = time.perf_counter()
    before = model.queries
    y_t, labels, y_pop = check_reference_attack(
        "LiRA", X_target, y_target, is_member, population_X, population_y, n_reference, online
    )
    n_pop = len(y_pop)
    pooled = n_reference < GLOBAL_VARIANCE_BELOW if global_variance is None else global_variance

    scores = lira_scores(
        model,
        X_target,
        y_t,
        population_X,
        y_pop,
        make_model,
        n_reference=n_reference,
        online=online,
        pooled=pooled,
        rng=np.random.default_rng(seed),
    )

    variant = "lira-online" if online else "lira-offline"
    return membership_result(
        attack="lira",
        variant=variant,
        scores=scores,
        labels=labels,
        model=model,
        queries_before=before,
        started=started,
        n_reference=n_reference,
        params={
            "n_reference": n_reference,
            "online": online,
            "global_variance": pooled,
            "population": n_pop,
            "phi_epsilon": PHI_EPSILON,
            "seed": seed,
        },
        n_bootstrap=n_bootstrap,
        seed=seed,
        fpr_levels=fpr_levels,
    )
