"""SHAP explanations: each explainer is additive (base value + values == the explained output),
maps one-hot columns back to the input columns, and refuses bad input clearly."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlwarden import datasets
from mlwarden.audit import Explainer
from mlwarden.errors import DataError, ParameterError
from mlwarden.models import SklearnAdapter
from mlwarden.pipeline._estimators import build_estimator

ESTIMATORS = {
    "logistic_regression": {"max_iter": 500},
    "random_forest": {"n_estimators": 10, "max_depth": 4},
    "gradient_boosting": {"n_estimators": 10, "max_depth": 2},
    "decision_tree": {"max_depth": 4},
    "mlp": {"max_iter": 300, "hidden_layer_sizes": (8,)},
}


@pytest.fixture(scope="module")
def adult() -> tuple[pd.DataFrame, np.ndarray, Any]:
    d = datasets.load("adult")
    X = d.X.sample(n=1200, random_state=0)
    return X.reset_index(drop=True), d.y.loc[X.index].to_numpy(), d.schema


@pytest.fixture(scope="module")
def fitted(adult: tuple[pd.DataFrame, np.ndarray, Any]) -> dict[str, Any]:
    X, y, schema = adult
    with warnings.catch_warnings():  # the tiny MLP need not converge
        warnings.simplefilter("ignore")
        return {n: build_estimator(n, p, schema, 0).fit(X, y) for n, p in ESTIMATORS.items()}


def _model_output(estimator: Any, X: pd.DataFrame, output: str, index: int) -> np.ndarray:
    if output == "probability":
        return np.asarray(estimator.predict_proba(X))[:, index]
    score = np.asarray(estimator.decision_function(X))
    return score if index == 1 else -score


@pytest.mark.parametrize(
    ("name", "method", "output", "tolerance"),
    [
        ("logistic_regression", "linear", "log-odds", 1e-6),
        ("random_forest", "tree", "probability", 1e-6),
        ("gradient_boosting", "tree", "log-odds", 1e-6),
        ("decision_tree", "tree", "probability", 1e-6),
        # the permutation explainer is additive by construction (its values telescope)
        ("mlp", "permutation", "probability", 1e-6),
    ],
)
def test_values_add_up_to_the_explained_output(
    adult: tuple[pd.DataFrame, np.ndarray, Any],
    fitted: dict[str, Any],
    name: str,
    method: str,
    output: str,
    tolerance: float,
) -> None:
    if method != "linear":
        pytest.importorskip("shap")
    X, _, _ = adult
    rows = X.iloc[-6:]
    found = Explainer(SklearnAdapter(fitted[name]), X.iloc[:400]).explain(rows)
    assert (found.method, found.output) == (method, output)
    assert found.features == list(X.columns)  # one value per input column, one-hots summed
    assert np.asarray(found.values).shape == (6, X.shape[1])
    expected = _model_output(fitted[name], rows, output, 1)
    assert np.allclose(found.outputs, expected, atol=tolerance, rtol=0)
    # and the values say something: not all zero
    assert max(abs(v) for row in found.values for v in row) > 1e-3


def test_linear_values_are_the_exact_formula_and_explain_either_class(
    adult: tuple[pd.DataFrame, np.ndarray, Any], fitted: dict[str, Any]
) -> None:
    X, _, _ = adult
    model = fitted["logistic_regression"]
    rows = X.iloc[:3]
    bg = X.iloc[:400]
    positive = Explainer(SklearnAdapter(model), bg, max_background=400).explain(rows)
    negative = Explainer(SklearnAdapter(model), bg, model.classes_[0], max_background=400)
    negative = negative.explain(rows)
    assert np.allclose(np.asarray(negative.values), -np.asarray(positive.values))
    # a numeric column's value is w * (z - mean z) in the scaled space, mean over the background
    prep, lr = model[:-1], model.steps[-1][1]
    Z, Zb = prep.transform(rows), prep.transform(X.iloc[:400])
    j = list(X.columns).index("age")
    expected = lr.coef_[0][0] * (Z[:, 0] - Zb[:, 0].mean())  # age is the first numeric output
    assert np.allclose([r[j] for r in positive.values], expected)


def test_mean_abs_ranks_columns_for_a_global_view(
    adult: tuple[pd.DataFrame, np.ndarray, Any], fitted: dict[str, Any]
) -> None:
    X, _, _ = adult
    found = Explainer(SklearnAdapter(fitted["logistic_regression"]), X).explain(X.iloc[:50])
    ranked = found.mean_abs()
    assert len(ranked) == X.shape[1]
    assert all(a >= b for (_, a), (_, b) in itertools.pairwise(ranked))
    column = ranked[0][0]
    j = found.features.index(column)
    assert ranked[0][1] == pytest.approx(np.mean(np.abs([r[j] for r in found.values])))


def test_bad_input_is_refused_by_name(
    adult: tuple[pd.DataFrame, np.ndarray, Any], fitted: dict[str, Any]
) -> None:
    X, _, _ = adult
    adapter = SklearnAdapter(fitted["logistic_regression"])
    with pytest.raises(ParameterError, match="not one of the model's classes"):
        Explainer(adapter, X, "maybe")
    with pytest.raises(DataError, match="at least one background"):
        Explainer(adapter, X.iloc[:0])
    with pytest.raises(DataError, match=r"lack column\(s\) \['age'\]"):
        Explainer(adapter, X).explain(X.drop(columns=["age"]).iloc[:2])
