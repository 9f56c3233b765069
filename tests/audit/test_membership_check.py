"""The membership check gates on the strongest attack's TPR at a low FPR."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlwarden import datasets
from mlwarden.audit import CheckContext, run_check
from mlwarden.models import SklearnAdapter
from mlwarden.models._adapter import MeteredModel


def _context(estimator: object, n_train: int = 1500) -> CheckContext:
    d = datasets.load("adult")
    X = pd.get_dummies(d.X.iloc[:6000], dtype=float)
    y = d.y.iloc[:6000]
    X_train, y_train = X.iloc[:n_train], y.iloc[:n_train]
    X_test, y_test = X.iloc[n_train:], y.iloc[n_train:]
    estimator.fit(X_train, y_train)  # type: ignore[attr-defined]
    return CheckContext(SklearnAdapter(estimator), X_train, y_train, X_test, y_test, d.positive)


POLICY = {"max_tpr_at_fpr": {"fpr": 0.01, "tpr": 0.025}, "rows": 1000}


def _forest() -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=30, random_state=0, n_jobs=1)


@pytest.fixture(scope="module")
def forest_finding() -> object:
    return run_check("membership", POLICY, _context(_forest()))


def test_by_default_rmia_with_two_references_fails_an_overfit_forest(
    forest_finding: object,
) -> None:
    finding = forest_finding
    attacks = finding.details["attacks"]  # type: ignore[attr-defined]
    assert set(attacks) == {"loss", "rmia-offline"}
    assert attacks["rmia-offline"]["n_reference"] == 2
    assert attacks["rmia-offline"]["auc"] > 0.7
    assert attacks["rmia-offline"]["tpr_at_fpr"]["0.01"] > 3 * attacks["loss"]["tpr_at_fpr"]["0.01"]
    assert finding.value == max(a["tpr_at_fpr"]["0.01"] for a in attacks.values())  # type: ignore[attr-defined]
    # members and non-members are queried once by each attack, and RMIA's z rows (population
    # rows one of the two reference halves left out) once more
    population = finding.details["population"]  # type: ignore[attr-defined]
    assert 2 * (1000 + 1000) + population // 2 < finding.queries < 4000 + population  # type: ignore[attr-defined]
    # LiRA with 4 reference models left this forest inconclusive (below); RMIA proves the leak
    assert finding.verdict == "fail" and finding.n == 1000  # type: ignore[attr-defined]
    assert finding.interval[0] > 0.025  # type: ignore[attr-defined]
    assert finding.message.startswith("rmia-offline reaches TPR")  # type: ignore[attr-defined]


def test_lira_with_four_references_is_weaker_on_the_same_forest() -> None:
    finding = run_check(
        "membership", {**POLICY, "attack": "lira", "n_reference": 4}, _context(_forest())
    )
    attacks = finding.details["attacks"]
    assert set(attacks) == {"loss", "lira-offline"}
    assert attacks["lira-offline"]["auc"] > 0.6
    assert attacks["lira-offline"]["tpr_at_fpr"]["0.01"] > attacks["loss"]["tpr_at_fpr"]["0.01"]
    assert finding.queries == 2 * (1000 + 1000)
    # 0.035 measured, but its interval reaches below the 0.025 allowed: not yet proven
    assert finding.verdict == "inconclusive" and finding.n == 1000
    low, high = finding.interval
    assert low < 0.025 < finding.value < high


def test_the_finding_carries_a_log_log_roc_per_attack(forest_finding: object) -> None:
    curve = forest_finding.details["curve"]  # type: ignore[attr-defined]
    assert curve["xscale"] == curve["yscale"] == "log" and curve["diagonal"]
    assert [s["label"].split()[0] for s in curve["series"]] == ["loss", "rmia-offline"]
    assert min(curve["series"][1]["x"]) <= 1 / 1000 + 1e-12


def test_a_regularised_linear_model_passes_near_chance() -> None:
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=500))
    # the default policy's limit (5x chance at 1% FPR): at chance, RMIA measures about 0.014
    # with an interval up to about 0.033 on 1,000 non-members, too wide to prove 0.025
    policy = {**POLICY, "max_tpr_at_fpr": {"fpr": 0.01, "tpr": 0.05}}
    finding = run_check("membership", policy, _context(model))
    assert finding.passed, finding.message
    for attack in finding.details["attacks"].values():
        assert abs(attack["auc"] - 0.5) < 0.05


class _Opaque(MeteredModel):
    """A model behind an API: probabilities only, no estimator to copy."""

    def __init__(self, fitted: Any) -> None:
        super().__init__()
        self._fitted = fitted

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self._fitted.classes_)

    def predict_proba(self, X: Any) -> np.ndarray:
        self._spend(len(X))
        return np.asarray(self._fitted.predict_proba(X))


def test_a_model_without_a_cloneable_estimator_gets_the_loss_attack_only() -> None:
    ctx = _context(RandomForestClassifier(n_estimators=5, random_state=0))
    opaque = _Opaque(ctx.model.estimator)  # type: ignore[attr-defined]
    finding = run_check("membership", POLICY, replace(ctx, model=opaque))
    assert list(finding.details["attacks"]) == ["loss"]
    assert finding.details["lira_skipped"].startswith("RMIA needs reference models")
    assert "scikit-learn" in finding.details["lira_skipped"]
    assert finding.queries == 2000


def test_too_few_non_members_for_the_rate_is_inconclusive_not_a_pass() -> None:
    # 500 non-members cannot pin a TPR at 0.1% FPR (half a false positive): the check used to
    # pass or fail on an interpolated figure.
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=500))
    policy = {**POLICY, "max_tpr_at_fpr": {"fpr": 0.001, "tpr": 0.01}, "rows": 500}
    finding = run_check("membership", policy, _context(model))
    assert finding.verdict == "inconclusive" and finding.n == 500
    assert "needs at least 10,000 non-members" in finding.message


def test_a_leak_far_above_the_limit_fails_even_on_few_non_members() -> None:
    forest = RandomForestClassifier(n_estimators=30, bootstrap=False, random_state=0, n_jobs=1)
    policy = {**POLICY, "max_tpr_at_fpr": {"fpr": 0.01, "tpr": 0.05}, "rows": 300}
    finding = run_check("membership", policy, _context(forest))
    assert finding.n == 300 and finding.interval is not None
    assert finding.verdict == "fail" and finding.interval[0] > 0.05, finding.message


def test_the_operating_point_is_validated() -> None:
    ctx = _context(DummyClassifier(), n_train=200)
    with pytest.raises(ValidationError, match="less than 1"):
        run_check("membership", {"max_tpr_at_fpr": {"fpr": 1.5, "tpr": 0.1}}, ctx)
    with pytest.raises(ValidationError, match="max_tpr_at_fpr"):
        run_check("membership", {"n_reference": 2}, ctx)


def test_held_out_rows_that_copy_a_member_are_not_counted_as_non_members() -> None:
    ctx = _context(DummyClassifier(strategy="prior"), n_train=300)
    whole = replace(  # audit --data with the whole table: training rows come back as "held out"
        ctx,
        X_test=pd.concat([ctx.X_train, ctx.X_test]),
        y_test=pd.concat([ctx.y_train, ctx.y_test]),
    )
    policy = {**POLICY, "attack": "loss"}
    finding = run_check("membership", policy, whole)
    assert finding.details["held_out_duplicates_of_members"] >= 300
    alone = run_check("membership", policy, ctx)
    assert (
        finding.details["held_out_duplicates_of_members"]
        - (alone.details["held_out_duplicates_of_members"])
        == 300
    )
    # what is left is exactly the true held-out split: the same attack, the same figures
    got, expected = finding.details["attacks"]["loss"], alone.details["attacks"]["loss"]
    assert (got["auc"], got["tpr_at_fpr"]) == (expected["auc"], expected["tpr_at_fpr"])
    assert finding.value == alone.value
