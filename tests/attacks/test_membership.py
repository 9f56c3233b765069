"""Membership inference: metrics on hand-made scores, loss attack vs LiRA on real models."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from mlwarden import datasets
from mlwarden.attacks._membership import (
    PHI_EPSILON,
    MembershipResult,
    lira,
    logit_confidence,
    loss_threshold_attack,
)
from mlwarden.attacks._membership_metrics import membership_metrics
from mlwarden.errors import DataError
from mlwarden.models._adapter import SklearnAdapter


@cache
def adult() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adult one-hot (float), binary labels, and a fixed row order."""
    data = datasets.load("adult")
    X = pd.get_dummies(data.X, dtype=float).to_numpy()
    y = (data.y == data.positive).to_numpy().astype(int)
    return X, y, np.random.default_rng(0).permutation(len(X))


def split(n: int) -> dict[str, Any]:
    """n members, n non-members, 2n population rows, all disjoint."""
    X, y, order = adult()
    train, held, pop = order[:n], order[n : 2 * n], order[2 * n : 4 * n]
    return {
        "train": (X[train], y[train]),
        "held": (X[held], y[held]),
        "cand": (np.concatenate([X[train], X[held]]), np.concatenate([y[train], y[held]])),
        "member": np.r_[np.ones(n, bool), np.zeros(n, bool)],
        "pop": (X[pop], y[pop]),
    }


def tree() -> DecisionTreeClassifier:
    return DecisionTreeClassifier(random_state=0)


def weak_logreg() -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(C=1e-3, max_iter=500))


def run_both(
    make: Any, n: int, n_reference: int, online: bool = False
) -> tuple[MembershipResult, MembershipResult, SklearnAdapter]:
    s = split(n)
    model = SklearnAdapter(make().fit(*s["train"]))
    loss = loss_threshold_attack(model, *s["train"], *s["held"], n_bootstrap=50)
    attack = lira(
        model, *s["cand"], s["member"], *s["pop"], make,
        n_reference=n_reference, online=online, n_bootstrap=50,
    )  # fmt: skip
    return loss, attack, model


# ---------------------------------------------------------------------------- scores


def test_logit_confidence_values_and_clipping() -> None:
    proba = np.array([[0.5, 0.5], [0.1, 0.9], [0.0, 1.0], [1.0, 0.0]])
    phi = logit_confidence(proba, ["a", "b"], ["a", "b", "b", "b"])
    big = np.log((1 - PHI_EPSILON) / PHI_EPSILON)
    np.testing.assert_allclose(phi, [0.0, np.log(9.0), big, -big])


def test_logit_confidence_unseen_label_is_minimum() -> None:
    phi = logit_confidence(np.array([[0.3, 0.7]]), [0, 1], [2])
    assert phi[0] == pytest.approx(np.log(PHI_EPSILON / (1 - PHI_EPSILON)))


# ---------------------------------------------------------------------------- metrics


def test_perfect_separation() -> None:
    labels = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    scores = np.r_[np.linspace(10, 11, 100), np.linspace(0, 1, 100)]
    m = membership_metrics(labels, scores)
    assert m.auc == pytest.approx(1.0)
    assert m.tpr_at_fpr[0.01] == 1.0 and m.tpr_at_fpr[0.001] == 1.0
    assert m.balanced_accuracy == 1.0
    assert m.auc_ci == pytest.approx((1.0, 1.0))


def test_reversed_scores_give_auc_zero() -> None:
    labels = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    m = membership_metrics(labels, np.r_[np.zeros(50), np.ones(50)])
    assert m.auc == 0.0
    assert m.tpr_at_fpr[0.01] == 0.0


def test_identical_distributions_near_chance() -> None:
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(2000, bool), np.zeros(2000, bool)]
    m = membership_metrics(labels, rng.normal(size=4000), n_bootstrap=100)
    assert abs(m.auc - 0.5) < 0.03
    assert m.auc_ci[0] < 0.5 < m.auc_ci[1]
    assert m.tpr_at_fpr[0.01] < 0.03
    assert m.balanced_accuracy < 0.55


def test_known_gaussian_auc() -> None:
    # Members ~ N(1, 1), non-members ~ N(0, 1): AUC = Phi(1 / sqrt 2) ~ 0.760.
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    labels = np.r_[np.ones(3000, bool), np.zeros(3000, bool)]
    scores = np.r_[rng.normal(1, 1, 3000), rng.normal(0, 1, 3000)]
    m = membership_metrics(labels, scores, n_bootstrap=100)
    assert m.auc == pytest.approx(roc_auc_score(labels, scores))
    assert m.auc == pytest.approx(0.760, abs=0.02)
    assert m.auc_ci[0] < 0.760 < m.auc_ci[1]
    # TPR at FPR f is 1 - Phi(Phi^-1(1 - f) - 1): 0.092 at 1%.
    assert m.tpr_at_fpr[0.01] == pytest.approx(0.092, abs=0.03)


def test_intervals_contain_estimates_and_roc_is_log_spaced() -> None:
    rng = np.random.default_rng(3)
    labels = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    scores = np.r_[rng.normal(0.7, 1, 500), rng.normal(0, 1, 500)]
    m = membership_metrics(labels, scores)
    assert m.auc_ci[0] <= m.auc <= m.auc_ci[1]
    for level, tpr in m.tpr_at_fpr.items():
        lo, hi = m.tpr_at_fpr_ci[level]
        assert lo <= tpr <= hi
    fprs = np.array([f for f, _ in m.roc])
    tprs = np.array([t for _, t in m.roc])
    assert fprs[0] == pytest.approx(1 / 500) and fprs[-1] == 1.0
    assert np.all(np.diff(fprs) > 0) and np.all(np.diff(tprs) >= 0)
    ratios = fprs[1:-1] / fprs[:-2]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-6)


def test_metrics_seeded() -> None:
    rng = np.random.default_rng(4)
    labels = rng.random(300) < 0.5
    scores = rng.normal(size=300) + labels
    a = membership_metrics(labels, scores, seed=7)
    b = membership_metrics(labels, scores, seed=7)
    c = membership_metrics(labels, scores, seed=8)
    assert a == b
    assert a.auc_ci != c.auc_ci


@pytest.mark.parametrize(
    ("labels", "scores"),
    [
        (np.ones(4, bool), np.arange(4.0)),
        (np.array([True, False]), np.array([0.0, np.nan])),
        (np.array([True, False]), np.array([0.0, 1.0, 2.0])),
    ],
)
def test_metrics_reject_bad_input(labels: np.ndarray, scores: np.ndarray) -> None:
    with pytest.raises(DataError):
        membership_metrics(labels, scores)


# ---------------------------------------------------------------------------- attacks


def test_overfit_tree_leaks_and_lira_beats_loss_at_low_fpr() -> None:
    loss, attack, model = run_both(tree, n=300, n_reference=4)
    assert loss.auc > 0.56
    assert loss.auc_ci[0] > 0.5
    assert attack.tpr_at_fpr[0.01] > loss.tpr_at_fpr[0.01]
    assert attack.variant == "lira-offline" and attack.n_reference == 4
    assert loss.variant == "loss" and loss.n_reference == 0
    assert loss.n_members == loss.n_non_members == 300
    assert 0.5 < loss.success_rate <= 1.0
    # Every target-model query counted: 600 rows for each attack.
    assert loss.queries == attack.queries == 600
    assert model.queries == 1200


def test_online_lira_on_overfit_tree() -> None:
    loss, attack, _ = run_both(tree, n=200, n_reference=4, online=True)
    assert attack.variant == "lira-online"
    assert attack.auc > 0.56
    assert attack.tpr_at_fpr[0.01] > loss.tpr_at_fpr[0.01]
    assert attack.params["global_variance"] is True


def test_regularised_model_does_not_leak() -> None:
    loss, attack, _ = run_both(weak_logreg, n=1500, n_reference=4)
    assert loss.auc < 0.6
    assert attack.auc < 0.6


def test_lira_deterministic_with_seed() -> None:
    s = split(150)
    model = SklearnAdapter(tree().fit(*s["train"]))
    runs = [
        lira(model, *s["cand"], s["member"], *s["pop"], tree, n_reference=2, n_bootstrap=20, seed=k)
        for k in (5, 5, 6)
    ]
    fields = ("auc", "tpr_at_fpr", "auc_ci", "roc", "examples")
    assert all(getattr(runs[0], f) == getattr(runs[1], f) for f in fields)
    assert runs[0].examples != runs[2].examples or runs[0].auc != runs[2].auc


def test_lira_accepts_dataframes() -> None:
    s = split(100)
    cols = [f"c{i}" for i in range(s["cand"][0].shape[1])]
    frame = lambda a: pd.DataFrame(a, columns=cols)  # noqa: E731
    model = SklearnAdapter(tree().fit(frame(s["train"][0]), s["train"][1]))
    result = lira(
        model, frame(s["cand"][0]), s["cand"][1], s["member"], frame(s["pop"][0]), s["pop"][1],
        tree, n_reference=2, online=True, n_bootstrap=10,
    )  # fmt: skip
    assert result.n_points == 200


def test_lira_validates_arguments() -> None:
    s = split(50)
    model = SklearnAdapter(tree().fit(*s["train"]))
    with pytest.raises(DataError, match="even"):
        lira(model, *s["cand"], s["member"], *s["pop"], tree, n_reference=3, online=True)
    with pytest.raises(DataError, match="is_member"):
        lira(model, *s["cand"], s["member"][:-1], *s["pop"], tree, n_reference=2)
    with pytest.raises(DataError):
        loss_threshold_attack(model, *s["train"], s["held"][0], s["held"][1][:-1])


def test_result_serialises() -> None:
    s = split(60)
    model = SklearnAdapter(tree().fit(*s["train"]))
    result = loss_threshold_attack(model, *s["train"], *s["held"], n_bootstrap=10)
    again = MembershipResult.model_validate_json(result.model_dump_json())
    assert again.tpr_at_fpr == result.tpr_at_fpr
    assert again.roc == result.roc
