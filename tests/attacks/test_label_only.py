"""Label-only extraction of linear models (Lowd & Meek 2005; Tramèr et al. 2016 §6)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC

from mlwarden.attacks import (
    LabelOnlyExtractionResult,
    OneHotDesign,
    extract_linear_labels,
    extract_linear_labels_pipeline,
    fidelity,
)
from mlwarden.errors import DataError, ModelError, QueryBudgetExceeded
from mlwarden.models import HardenedModel, OutputHardening, SklearnAdapter


class Linear:
    """A hand-made linear scorer ``w.x + b`` with scikit-learn's classifier surface."""

    classes_ = np.array(["no", "yes"])

    def __init__(self, w: np.ndarray, b: float) -> None:
        self.w, self.b = np.asarray(w, dtype=float), float(b)

    def decision_function(self, X: Any) -> np.ndarray:
        return np.asarray(np.asarray(X, dtype=float) @ self.w + self.b)

    def predict_proba(self, X: Any) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - p, p])


class Parabola(Linear):
    """Not linear: positive above ``x1 = 2 x0**2 - 0.5``."""

    def decision_function(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        return np.asarray(X[:, 1] - 2.0 * X[:, 0] ** 2 + 0.5)


def _unit(w: np.ndarray, b: float) -> tuple[np.ndarray, float]:
    norm = float(np.linalg.norm(w))
    return w / norm, b / norm


@pytest.mark.parametrize(
    ("d", "seed", "box"),
    [(1, 0, 1.0), (5, 1, 1.0), (12, 2, 3.0), (30, 3, 10.0)],
)
def test_a_known_linear_model_is_recovered_to_1e_3_within_20_queries_a_parameter(
    d: int, seed: int, box: float
) -> None:
    rng = np.random.default_rng(seed)
    # Uneven weights (one ten times another) and an offset boundary.
    w = rng.normal(size=d) * rng.choice([0.1, 1.0, 10.0], size=d)
    b = float(rng.normal()) * box * float(np.abs(w).mean())
    target = Linear(w, b)
    adapter = SklearnAdapter(target)
    result = extract_linear_labels(adapter, d, feature_box=(-box, box), true_model=target)
    assert isinstance(result, LabelOnlyExtractionResult)
    true_w, true_b = _unit(w, b)
    assert np.allclose(result.coef[0], true_w, atol=1e-3)
    assert result.intercept[0] == pytest.approx(true_b, abs=1e-3)
    assert result.max_abs_weight_error is not None and result.max_abs_weight_error < 1e-3
    # Every query went through the adapter, and the whole attack fits 20 (d + 1).
    assert result.queries == result.queries_to_extract == adapter.queries <= 20 * (d + 1)
    assert result.fidelity_uniform is not None and result.fidelity_uniform >= 0.99
    assert result.unbracketed == 0


def test_a_budget_is_honoured_and_a_hopeless_one_refused_before_any_query() -> None:
    w, b = np.array([1.0, -2.0, 0.5, 3.0, -1.0, 0.2]), 0.4
    target = Linear(w, b)
    adapter = SklearnAdapter(target)
    small = extract_linear_labels(adapter, 6, budget=60, true_model=target)
    assert small.queries <= 60 and adapter.queries == small.queries
    assert small.search_steps < 16  # fewer bisection steps to fit
    assert small.fidelity_uniform is not None and small.fidelity_uniform >= 0.95
    fresh = SklearnAdapter(target)
    with pytest.raises(QueryBudgetExceeded, match="needs at least"):
        extract_linear_labels(fresh, 6, budget=20)
    assert fresh.queries == 0
    # An adapter's own rate limit stops the attack with the adapter's error.
    with pytest.raises(QueryBudgetExceeded):
        extract_linear_labels(SklearnAdapter(target, budget=30), 6)


@settings(max_examples=25, deadline=None)
@given(
    d=st.integers(1, 8),
    budget=st.integers(14, 200),
    seed=st.integers(0, 2**16),
)
def test_queries_never_exceed_the_budget(d: int, budget: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = Linear(rng.normal(size=d), float(rng.normal()))
    adapter = SklearnAdapter(target)
    try:
        result = extract_linear_labels(adapter, d, budget=budget, seed=seed, true_model=target)
    except QueryBudgetExceeded:
        # refused up front (too small for one probe a column) or, rarely, mid-way
        assert adapter.queries <= budget
        return
    assert result.queries == adapter.queries <= budget


def test_label_only_outputs_are_enough() -> None:
    w, b = np.array([0.5, -1.5, 2.0]), -0.25
    target = Linear(w, b)
    hardened = HardenedModel(SklearnAdapter(target), OutputHardening(mode="label"))
    result = extract_linear_labels(hardened, 3, true_model=target)
    assert np.allclose(result.coef[0], _unit(w, b)[0], atol=1e-3)
    assert hardened.queries == result.queries


@pytest.fixture(scope="module")
def table() -> dict[str, pd.DataFrame | pd.Series]:
    """Two numeric and two categorical columns; the label is linear in their one-hot design."""
    rng = np.random.default_rng(0)
    n = 3000
    X = pd.DataFrame(
        {
            "age": rng.uniform(18, 90, n).round(),
            "colour": rng.choice(["red", "green", "blue", "grey"], n),
            "hours": rng.uniform(0, 80, n),
            "plan": rng.choice(["basic", "plus", "pro"], n, p=[0.2, 0.5, 0.3]),
        }
    )
    score = (
        0.05 * (X["age"] - 50)
        - 0.03 * (X["hours"] - 40)
        + X["colour"].map({"red": 1.0, "green": -0.5, "blue": 0.0, "grey": 0.3})
        + X["plan"].map({"basic": -1.0, "plus": 0.2, "pro": 0.8})
        + rng.logistic(size=n) * 0.5
    )
    return {"X": X, "y": pd.Series(np.where(score > 0, "yes", "no"))}


def _onehot(final: Any) -> Pipeline:
    prep = ColumnTransformer(
        [
            ("onehot", OneHotEncoder(handle_unknown="ignore"), ["colour", "plan"]),
            ("numeric", StandardScaler(), ["age", "hours"]),
        ]
    )
    return Pipeline([("prep", prep), ("model", final)])


@pytest.mark.parametrize(
    "final", [LogisticRegression(max_iter=2000), LinearSVC(C=0.5)], ids=["logistic", "svm"]
)
def test_a_one_hot_linear_pipeline_is_recovered_from_labels(
    table: dict[str, Any], final: Any
) -> None:
    X, y = table["X"], table["y"]
    model = _onehot(final).fit(X.iloc[:2000], y.iloc[:2000])
    adapter = SklearnAdapter(model)
    result = extract_linear_labels_pipeline(
        adapter, X.iloc[:2000], ["colour", "plan"], X_test=X.iloc[2000:], true_model=model
    )
    p = OneHotDesign.from_reference(X, ["colour", "plan"]).n_features
    assert result.queries == adapter.queries <= 20 * (p + 1)
    assert result.max_abs_weight_error is not None and result.max_abs_weight_error < 1e-3
    assert result.fidelity_test is not None and result.fidelity_test >= 0.99
    assert result.reference in ("age", "hours")
    # The copy takes the same DataFrames and agrees with the target.
    assert fidelity(result.copy_model, model, X.iloc[2000:]) == result.fidelity_test


def test_a_table_without_numeric_columns_is_refused(table: dict[str, Any]) -> None:
    X = table["X"][["colour", "plan"]]
    model = Pipeline(
        [("onehot", OneHotEncoder()), ("model", LogisticRegression())]
    ).fit(X, table["y"])  # fmt: skip
    with pytest.raises(DataError, match="numeric column"):
        extract_linear_labels_pipeline(SklearnAdapter(model), X, ["colour", "plan"])


def test_a_non_linear_model_gets_an_honest_low_fidelity() -> None:
    target = Parabola(np.zeros(2), 0.0)
    result = extract_linear_labels(SklearnAdapter(target), 2, true_model=target)
    # The attack finishes, and says its copy is poor, measured on uniform rows.
    assert result.fidelity_uniform is not None and result.fidelity_uniform < 0.9
    X = np.random.default_rng([0, 1]).uniform(-1.0, 1.0, (1000, 2))
    assert result.fidelity_uniform == fidelity(result.copy_model, SklearnAdapter(target), X)


def test_a_single_class_model_is_refused_with_a_clear_error() -> None:
    X = np.random.default_rng(0).normal(size=(20, 3))
    one_class = DummyClassifier().fit(X, np.zeros(20))
    with pytest.raises(ModelError, match="two-class models; this one has 1"):
        extract_linear_labels(SklearnAdapter(one_class), 3)
    # Two classes known, one ever answered: no boundary to find.
    constant = DummyClassifier().fit(X, np.r_[np.zeros(15), np.ones(5)])
    adapter = SklearnAdapter(constant)
    with pytest.raises(ModelError, match=r"both classes.*negative class to all 32 queries"):
        extract_linear_labels(adapter, 3)
    assert adapter.queries == 32


def test_more_than_two_classes_are_refused() -> None:
    X = np.random.default_rng(0).normal(size=(60, 2))
    model = LogisticRegression().fit(X, np.arange(60) % 3)
    with pytest.raises(ModelError, match="3 classes"):
        extract_linear_labels(SklearnAdapter(model), 2)
