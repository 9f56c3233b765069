"""ROC metrics of a membership score, read where privacy is judged: TPR at low FPR.

AUC, TPR at 1% and 0.1% FPR (interpolated from the ROC), seeded bootstrap 95% intervals and a
log-spaced ROC for a log-log plot, as Carlini et al., "Membership Inference Attacks From First
Principles" (IEEE S&P 2022) recommend reporting them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

from mlwarden._tasks import item_seeds, task_map
from mlwarden.errors import DataError, ParameterError

__all__ = ["FPR_LEVELS", "MembershipMetrics", "membership_metrics"]

#: The false-positive rates at which true-positive rates are reported.
FPR_LEVELS: tuple[float, ...] = (0.01, 0.001)

_ROC_POINTS = 40
#: Bootstrap resamples per work item: enough work to outweigh sending it to a worker.
_RESAMPLES_PER_CHUNK = 25


class MembershipMetrics(BaseModel):
    """ROC metrics of a membership score: higher score means "more likely a member".

    ``tpr_at_fpr`` maps each FPR in :data:`FPR_LEVELS` to the TPR read off the ROC by linear
    interpolation; ``*_ci`` are percentile bootstrap 95% intervals (members and non-members
    resampled separately, so both counts stay fixed). ``roc`` is ``(fpr, tpr)`` pairs at
    log-spaced FPRs from ``1 / n_non_members`` (or 1e-4) to 1. ``balanced_accuracy`` is
    ``(TPR + 1 - FPR) / 2`` at the threshold that maximises it.
    """

    auc: float
    auc_ci: tuple[float, float]
    tpr_at_fpr: dict[float, float]
    tpr_at_fpr_ci: dict[float, tuple[float, float]]
    roc: list[tuple[float, float]]
    balanced_accuracy: float
    n_members: int
    n_non_members: int


def _roc(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)


def _point_metrics(
    labels: np.ndarray, scores: np.ndarray, levels: Sequence[float]
) -> tuple[float, list[float], float, np.ndarray, np.ndarray]:
    from sklearn.metrics import auc as sklearn_auc

    fpr, tpr = _roc(labels, scores)
    auc = float(sklearn_auc(fpr, tpr))
    tprs = [float(np.interp(level, fpr, tpr)) for level in levels]
    balanced = float(np.max((tpr + 1.0 - fpr) / 2.0))
    return auc, tprs, balanced, fpr, tpr


def _bootstrap(
    labels: np.ndarray,
    values: np.ndarray,
    members: np.ndarray,
    non_members: np.ndarray,
    n_bootstrap: int,
    seed: int,
    levels: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and TPRs of ``n_bootstrap`` stratified resamples, in chunks on the task runner.

    Each chunk of :data:`_RESAMPLES_PER_CHUNK` resamples draws from its own seed
    (:func:`item_seeds`), so the resamples do not depend on the engine or its worker count.
    """
    starts = range(0, n_bootstrap, _RESAMPLES_PER_CHUNK)
    sizes = [min(_RESAMPLES_PER_CHUNK, n_bootstrap - start) for start in starts]

    def resample(item: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        chunk_seed, size = item
        rng = np.random.default_rng(chunk_seed)
        aucs, tprs = np.empty(size), np.empty((size, len(levels)))
        for b in range(size):
            idx = np.concatenate(
                [
                    rng.choice(members, size=len(members), replace=True),
                    rng.choice(non_members, size=len(non_members), replace=True),
                ]
            )
            aucs[b], tprs[b], *_ = _point_metrics(labels[idx], values[idx], levels)
        return aucs, tprs

    parts = task_map(resample, list(zip(item_seeds(seed, len(sizes)), sizes, strict=True)))
    return np.concatenate([a for a, _ in parts]), np.concatenate([t for _, t in parts])


def membership_metrics(
    is_member: Any,
    scores: Any,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
    fpr_levels: Sequence[float] = FPR_LEVELS,
) -> MembershipMetrics:
    """AUC, TPR at low FPR, bootstrap intervals and a log-spaced ROC of a membership score.

    Parameters
    ----------
    is_member : array-like of bool, shape (n,)
        Ground truth.
    scores : array-like of float, shape (n,)
        Higher means more likely a member.
    n_bootstrap : int, default 200
        Bootstrap resamples for the 95% percentile intervals; members and non-members are
        resampled separately (stratified), each with replacement.
    seed : int, default 0
        Seeds the bootstrap (chunks of resamples, each seeded from it, run on the task
        runner: the same intervals whatever the engine or worker count).
    fpr_levels : sequence of float
        FPRs at which to report the TPR, read off the ROC (``sklearn.metrics.roc_curve``) by
        linear interpolation. With fewer than ``1 / fpr`` non-members the figure is an
        interpolation between the ROC's first points and is coarse.

    Returns
    -------
    MembershipMetrics

    Raises
    ------
    DataError
        If the lengths differ, or either class is empty, or a score is not finite.
    """
    labels = np.asarray(is_member, dtype=bool)
    values = np.asarray(scores, dtype=float)
    if labels.shape != values.shape or labels.ndim != 1:
        raise DataError(f"is_member {labels.shape} and scores {values.shape} must be 1-d, alike")
    if not np.all(np.isfinite(values)):
        raise DataError("membership scores must be finite")
    members, non_members = np.flatnonzero(labels), np.flatnonzero(~labels)
    if len(members) == 0 or len(non_members) == 0:
        raise DataError("membership metrics need at least one member and one non-member")
    if n_bootstrap < 1:
        raise ParameterError(f"n_bootstrap must be at least 1, got {n_bootstrap}")

    auc, tprs, balanced, fpr, tpr = _point_metrics(labels, values, fpr_levels)

    boot_auc, boot_tpr = _bootstrap(
        labels, values, members, non_members, n_bootstrap, seed, fpr_levels
    )

    def interval(sample: np.ndarray) -> tuple[float, float]:
        lo, hi = np.percentile(sample, [2.5, 97.5])
        return float(lo), float(hi)

    low = max(1.0 / len(non_members), 1e-4)
    grid = np.unique(np.concatenate([np.geomspace(low, 1.0, _ROC_POINTS), [1.0]]))
    roc = [(float(f), float(np.interp(f, fpr, tpr))) for f in grid]
    return MembershipMetrics(
        auc=auc,
        auc_ci=interval(boot_auc),
        tpr_at_fpr={float(level): t for level, t in zip(fpr_levels, tprs, strict=True)},
        tpr_at_fpr_ci={
            float(level): interval(boot_tpr[:, j]) for j, level in enumerate(fpr_levels)
        },
        roc=roc,
        balanced_accuracy=balanced,
        n_members=len(members),
        n_non_members=len(non_members),
    )
