"""The dp_audit check: one finding with the DP model and its non-private twin side by side."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

import mlwarden.audit._dp_audit  # noqa: F401  (registers the check)
from mlwarden import datasets
from mlwarden.audit import CheckContext, Finding, run_check
from mlwarden.models import SklearnAdapter
from mlwarden.models._adapter import MeteredModel


def _context(model: Any, n_train: int = 600) -> CheckContext:
    d = datasets.load("adult")
    X, y = d.X.iloc[:3000], d.y.iloc[:3000]
    numeric = list(X.select_dtypes("number").columns)
    categorical = [c for c in X.columns if c not in numeric]
    prepare = ColumnTransformer(
        [
            ("numeric", StandardScaler(), numeric),
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                categorical,
            ),
        ]
    )
    pipe = Pipeline([("prepare", prepare), ("model", model)])
    pipe.fit(X.iloc[:n_train], y.iloc[:n_train])
    return CheckContext(
        SklearnAdapter(pipe), X.iloc[:n_train], y.iloc[:n_train], X.iloc[n_train:],
        y.iloc[n_train:], d.positive,
    )  # fmt: skip


@pytest.fixture(scope="module")
def dp_finding() -> Finding:
    pytest.importorskip("opacus")
    from mlwarden.models._dp import DPSGDClassifier

    # Wide network, many epochs, few rows, loose clipping: the twin memorises, the DP one can't.
    model = DPSGDClassifier(
        epsilon=1.0, hidden=256, epochs=80, batch_size=64, lr=0.5, max_grad_norm=20.0,
        random_state=0,
    )  # fmt: skip
    return run_check("dp_audit", {"max_empirical_epsilon": 0.5}, _context(model))


def test_dp_model_and_its_twin_share_one_finding(dp_finding: Finding) -> None:
    audits = dp_finding.details["audits"]
    assert len(audits) == 2
    dp, twin = audits.values()
    assert 0.9 < dp["claimed_epsilon"] <= 1.0 and twin["claimed_epsilon"] is None
    assert twin["delta"] == dp["delta"] == 1e-5  # the same null hypothesis for both rows
    assert dp["empirical_epsilon"] <= dp["claimed_epsilon"]  # soundness
    assert twin["empirical_epsilon"] > 0.2  # the twin leaks measurably ...
    assert twin["empirical_epsilon"] >= dp["empirical_epsilon"]  # ... and at least as much
    assert abs(dp["auc"] - 0.5) < 0.05
    table = dp_finding.details["tables"][0]
    assert len(table["rows"]) == 2 and len(table["columns"]) == len(table["rows"][0]) == 8
    assert table["rows"][0][0].startswith("as trained: DPSGDClassifier")
    assert table["rows"][1][1] == "none (not DP)"
    assert [len(s["x"]) > 0 for s in dp_finding.details["curve"]["series"]] == [True, True]
    assert not dp_finding.details["exceeds_claim"]


def test_gate_reads_the_trained_models_bound(dp_finding: Finding) -> None:
    dp = dp_finding.details["audits"]
    value = next(iter(dp.values()))["empirical_epsilon"]
    assert dp_finding.value == value and dp_finding.metric == "empirical_epsilon"
    assert dp_finding.comparison == "<=" and dp_finding.threshold == 0.5
    assert dp_finding.passed == (value <= 0.5)
    assert dp_finding.message.startswith(f"empirical epsilon >= {value:.2f}")
    assert "non-private twin: >= " in dp_finding.message
    assert dp_finding.queries == 0  # the deployed model is never queried: copies are audited


def test_a_memorising_non_dp_model_fails_and_claims_nothing() -> None:
    ctx = _context(DecisionTreeClassifier(random_state=0), n_train=1500)
    finding = run_check("dp_audit", {"max_empirical_epsilon": 0.5, "n_audit": 1000}, ctx)
    assert finding.value is not None and finding.value > 0.5
    assert not finding.passed
    assert "claimed none (not DP)" in finding.message and "twin" not in finding.message
    assert len(finding.details["tables"][0]["rows"]) == 1
    lenient = run_check("dp_audit", {"max_empirical_epsilon": 64.0, "n_audit": 1000}, ctx)
    assert lenient.passed and lenient.value == finding.value  # same seed, same audit


class _Opaque(MeteredModel):
    """A model behind an API: probabilities only, no estimator to retrain."""

    def __init__(self, fitted: Any) -> None:
        super().__init__()
        self._fitted = fitted

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self._fitted.classes_)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        self._spend(len(X))
        return np.asarray(self._fitted.predict_proba(X))


def test_a_model_without_an_estimator_is_not_measured() -> None:
    ctx = _context(DecisionTreeClassifier(max_depth=3, random_state=0))
    opaque = CheckContext(
        _Opaque(ctx.model.estimator), ctx.X_train, ctx.y_train, ctx.X_test, ctx.y_test,  # type: ignore[attr-defined]
        ctx.positive,
    )  # fmt: skip
    finding = run_check("dp_audit", {"max_empirical_epsilon": 1.0}, opaque)
    assert finding.value is None and not finding.passed
    assert "not measured" in finding.message and "scikit-learn estimator" in finding.message


def test_parameters_are_validated() -> None:
    ctx = _context(DecisionTreeClassifier(max_depth=3, random_state=0))
    with pytest.raises(ValidationError):
        run_check("dp_audit", {"max_empirical_epsilon": -1.0}, ctx)
    with pytest.raises(ValidationError):
        run_check("dp_audit", {"max_empirical_epsilon": 1.0, "attack": "nope"}, ctx)
    with pytest.raises(ValidationError):
        run_check("dp_audit", {"max_empirical_epsilon": 1.0, "unknown": 1}, ctx)


def test_lira_variant_trains_references_on_the_held_out_split() -> None:
    ctx = _context(DecisionTreeClassifier(random_state=0), n_train=1000)
    params = {"max_empirical_epsilon": 0.5, "n_audit": 600, "attack": "lira", "n_reference": 2}
    finding = run_check("dp_audit", params, ctx)
    assert finding.details["attack"] == "lira-offline"
    assert finding.value is not None and finding.value > 0.5
