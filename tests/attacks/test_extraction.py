"""Tests for equation-solving model extraction (Tramèr et al., USENIX Security 2016)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlwarden import datasets
from mlwarden.attacks._extraction import (
    ExtractedLinearModel,
    ExtractionResult,
    OneHotDesign,
    extract_logistic,
    extract_logistic_pipeline,
    fidelity,
)
from mlwarden.errors import QueryBudgetExceeded
from mlwarden.models._adapter import SklearnAdapter

# Adult's categorical features, as its declared schema says.
CATEGORICAL = [
    name
    for name, column in datasets.load("adult").schema.columns.items()
    if not column.is_numeric and name != "income"
]


class BlackBox:
    """An API exposing only predict_proba, classes_ and queries: no estimator, no predict."""

    def __init__(self, estimator: Any, budget: int | None = None) -> None:
        self._adapter = SklearnAdapter(estimator, budget=budget)
        self.touched: list[str] = []

    @property
    def classes_(self) -> np.ndarray:
        return self._adapter.classes_

    @property
    def queries(self) -> int:
        return self._adapter.queries

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._adapter.predict_proba(X)

    def __getattr__(self, name: str) -> Any:
        self.__dict__.setdefault("touched", []).append(name)
        raise AttributeError(name)


def _binary(d: int = 10, seed: int = 0) -> tuple[LogisticRegression, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, d))
    y = (X @ rng.normal(size=d) + 0.5 * rng.normal(size=400) > 0).astype(int)
    return LogisticRegression(max_iter=2000).fit(X, y), X


def _multiclass(k: int, d: int = 8, seed: int = 0) -> tuple[LogisticRegression, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(100 * k, d))
    y = np.argmax(X @ rng.normal(size=(d, k)) + 0.3 * rng.normal(size=(100 * k, k)), axis=1)
    return LogisticRegression(max_iter=5000).fit(X, y), X


def test_binary_exact_recovery_in_d_plus_1_queries() -> None:
    model, X = _binary()
    target = BlackBox(model)
    result = extract_logistic(target, 10, feature_box=(-1.0, 1.0), X_test=X, true_model=model)
    assert isinstance(result, ExtractionResult)
    assert result.queries_to_extract == result.queries == target.queries == 11
    assert target.touched == []
    scale = max(np.abs(model.coef_).max(), np.abs(model.intercept_).max())
    assert np.abs(np.array(result.coef) - model.coef_).max() / scale < 1e-6
    assert np.abs(np.array(result.intercept) - model.intercept_).max() / scale < 1e-6
    assert result.max_abs_weight_error is not None and result.max_abs_weight_error / scale < 1e-6
    assert result.fidelity_test == 1.0
    assert result.fidelity_uniform == 1.0
    assert result.success_rate == 1.0
    copy = result.copy_model
    assert isinstance(copy, ExtractedLinearModel)
    np.testing.assert_allclose(copy.predict_proba(X), model.predict_proba(X), atol=1e-9)
    assert list(copy.classes_) == [0, 1]


@pytest.mark.parametrize("k", [3, 5, 10])
def test_multiclass_recovery_up_to_shared_offset(k: int) -> None:
    model, X = _multiclass(k)
    result = extract_logistic(BlackBox(model), 8, feature_box=(-2.0, 2.0), X_test=X, seed=k)
    assert result.queries_to_extract == 9
    relative = model.coef_ - model.coef_[0]
    np.testing.assert_allclose(np.array(result.coef), relative, atol=1e-8)
    np.testing.assert_allclose(
        np.array(result.intercept), model.intercept_ - model.intercept_[0], atol=1e-8
    )
    assert result.fidelity_test == 1.0
    assert result.fidelity_uniform == 1.0
    np.testing.assert_allclose(
        result.copy_model.predict_proba(X), model.predict_proba(X), atol=1e-9
    )


def test_least_squares_with_extra_queries() -> None:
    model, _ = _binary(d=5, seed=3)
    result = extract_logistic(
        SklearnAdapter(model), 5, feature_box=(-1.0, 1.0), extra_queries=10, true_model=model
    )
    assert result.queries_to_extract == 16
    assert result.max_abs_weight_error is not None and result.max_abs_weight_error < 1e-8
    assert result.fidelity_uniform == 1.0


def test_saturated_answers_are_requeried_within_budget() -> None:
    model, _ = _binary(seed=1)
    # A wide box saturates the sigmoid; those rows are drawn again closer to the centre.
    result = extract_logistic(
        SklearnAdapter(model), 10, feature_box=(-50.0, 50.0), budget=200, true_model=model
    )
    assert 11 < result.queries_to_extract <= 200
    assert result.max_abs_weight_error is not None and result.max_abs_weight_error < 1e-6
    assert result.fidelity_uniform == 1.0


def test_budget_below_d_plus_1_raises_before_querying() -> None:
    model, _ = _binary()
    target = SklearnAdapter(model)
    with pytest.raises(QueryBudgetExceeded):
        extract_logistic(target, 10, budget=10)
    assert target.queries == 0
    with pytest.raises(QueryBudgetExceeded):
        extract_logistic(target, 10, budget=12, extra_queries=5)
    assert target.queries == 0


def test_adapter_budget_is_never_exceeded() -> None:
    model, _ = _binary()
    target = SklearnAdapter(model, budget=11)
    result = extract_logistic(target, 10, true_model=model)
    assert target.queries == 11 == result.queries
    # Too small an adapter budget: its own refusal propagates, nothing is spent.
    small = SklearnAdapter(model, budget=5)
    with pytest.raises(QueryBudgetExceeded):
        extract_logistic(small, 10)
    assert small.queries == 0


def test_fidelity_without_true_model_queries_the_target_but_is_not_counted() -> None:
    model, X = _binary(d=4)
    target = BlackBox(model)
    result = extract_logistic(target, 4, X_test=X[:50], n_uniform=100)
    assert result.queries == 5
    assert target.queries == 5 + 100 + 50
    assert result.fidelity_test == result.fidelity_uniform == 1.0


def test_fidelity_helper() -> None:
    copy = ExtractedLinearModel([[1.0]], [0.0], np.array(["a", "b"]))
    other = ExtractedLinearModel([[-1.0]], [0.0], np.array(["a", "b"]))
    X = np.array([[1.0], [-1.0], [2.0]])
    assert fidelity(copy, copy, X) == 1.0
    assert fidelity(copy, other, X) == 0.0
    assert fidelity(copy, other, X[:0]) == 1.0


@pytest.fixture(scope="module")
def adult() -> tuple[pd.DataFrame, pd.Series]:
    data = datasets.load("adult")
    frame = data.frame.sample(3000, random_state=0)
    X = frame[list(data.X.columns)].copy()
    X[CATEGORICAL] = X[CATEGORICAL].fillna("missing")
    return X, frame[data.label]


def _adult_pipeline(X: pd.DataFrame, y: pd.Series) -> Pipeline:
    numeric = [c for c in X.columns if c not in CATEGORICAL]
    prep = ColumnTransformer(
        [
            ("onehot", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
            ("numeric", StandardScaler(), numeric),
        ]
    )
    return Pipeline([("prep", prep), ("lr", LogisticRegression(max_iter=5000))]).fit(X, y)


def test_onehot_pipeline_on_adult_is_exact(adult: tuple[pd.DataFrame, pd.Series]) -> None:
    X, y = adult
    pipe = _adult_pipeline(X, y)
    target = BlackBox(pipe)
    result = extract_logistic_pipeline(target, X, CATEGORICAL, X_test=X, true_model=pipe)
    design = OneHotDesign.from_reference(X, CATEGORICAL)
    assert target.queries == result.queries_to_extract == design.n_features + 1
    assert target.touched == []
    assert result.fidelity_test == 1.0
    assert result.fidelity_uniform == 1.0
    assert result.max_abs_weight_error is not None and result.max_abs_weight_error < 1e-6
    copy = result.copy_model
    np.testing.assert_allclose(copy.predict_proba(X), pipe.predict_proba(X), atol=1e-8)
    assert list(copy.predict(X)) == list(pipe.predict(X))
    with pytest.raises(QueryBudgetExceeded):
        extract_logistic_pipeline(BlackBox(pipe), X, CATEGORICAL, budget=design.n_features)


def test_onehot_design_drops_one_reference_per_column() -> None:
    X = pd.DataFrame({"n": [1.0, 2.0, 3.0], "c": ["x", "y", "z"], "e": ["u", "u", "v"]})
    design = OneHotDesign.from_reference(X, ["c", "e"])
    assert design.n_features == 1 + 2 + 1
    np.testing.assert_array_equal(design.transform(X), [[1, 0, 0, 0], [2, 1, 0, 0], [3, 0, 1, 1]])
