"""HopSkipJump: closed-form minima on linear models, budgets, decisions only, trees, seeds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from mlwarden import datasets
from mlwarden.attacks._hopskipjump import HopSkipJumpResult, hop_skip_jump
from mlwarden.models._adapter import ModelAdapter, SklearnAdapter

D = 10
W = np.random.default_rng(7).normal(size=D)
B = 0.3
BOX = (-10.0, 10.0)


def linear_model(w: np.ndarray = W, b: float = B) -> LogisticRegression:
    """A logistic regression with set weights: its boundary is the plane w.x + b = 0."""
    model = LogisticRegression()
    model.classes_ = np.array([0, 1])
    model.coef_ = w[None, :]
    model.intercept_ = np.array([b])
    return model


def points(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, D))


class DecisionOnly:
    """A model adapter that answers labels only: asking for probabilities fails the test."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self._queries = 0

    @property
    def classes_(self) -> np.ndarray:
        return np.asarray(self.estimator.classes_)

    @property
    def queries(self) -> int:
        return self._queries

    def predict_proba(self, X: Any) -> np.ndarray:
        raise AssertionError("HopSkipJump must not ask for probabilities")

    def predict(self, X: Any) -> np.ndarray:
        self._queries += len(X)
        return np.asarray(self.estimator.predict(X))


class Argmax:
    """Labels by the largest of a few linear scores: a cheap multi-class, decision-only model."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray) -> None:
        self.weights, self.bias = weights, bias
        self._queries = 0

    @property
    def classes_(self) -> np.ndarray:
        return np.array(["a", "b", "c"])

    @property
    def queries(self) -> int:
        return self._queries

    def predict_proba(self, X: Any) -> np.ndarray:
        raise AssertionError("HopSkipJump must not ask for probabilities")

    def predict(self, X: Any) -> np.ndarray:
        self._queries += len(X)
        return self.classes_[np.argmax(np.asarray(X) @ self.weights.T + self.bias, axis=1)]


def assert_adversarial(model: ModelAdapter, X: np.ndarray, result: HopSkipJumpResult) -> None:
    """Every returned point is labelled differently from its original."""
    found = [i for i, a in enumerate(result.adversarial) if a is not None]
    if found:
        adv = np.array([result.adversarial[i] for i in found])
        assert np.all(model.predict(adv) != model.predict(X[found]))


@pytest.mark.parametrize(("norm", "dual"), [("l2", 2), ("linf", 1)])
def test_linear_model_reaches_the_closed_form_minimum(norm: str, dual: int) -> None:
    X = points(6)
    model = SklearnAdapter(linear_model())
    result = hop_skip_jump(model, X, norm=norm, clip=BOX, budget=6 * 3000)
    minimum = np.abs(X @ W + B) / np.linalg.norm(W, ord=dual)
    found = np.array(result.perturbation, dtype=float)
    assert result.success_rate == 1.0
    assert np.all(found >= minimum * (1 - 1e-9)), "closer than the true minimum: a bug"
    assert np.all(found <= minimum * 1.10)
    adv = np.array(result.adversarial)
    assert np.allclose(found, np.linalg.norm(adv - X, ord=np.inf if norm == "linf" else 2, axis=1))
    assert_adversarial(SklearnAdapter(linear_model()), X, result)


@settings(max_examples=40, deadline=None)
@given(
    budget=st.integers(min_value=0, max_value=400),
    n=st.integers(min_value=1, max_value=4),
    norm=st.sampled_from(["l2", "linf"]),
    adapter_budget=st.none() | st.integers(min_value=1, max_value=300),
)
def test_budget_is_never_exceeded(
    budget: int, n: int, norm: str, adapter_budget: int | None
) -> None:
    model = SklearnAdapter(linear_model(), budget=adapter_budget)
    model.predict(points(1, seed=9))
    result = hop_skip_jump(model, points(n), norm=norm, clip=BOX, budget=budget, init_evals=20)
    assert result.queries == model.queries - 1 <= budget
    assert sum(result.queries_per_point) == result.queries
    assert max(result.queries_per_point) <= -(-budget // n)
    assert result.curve[-1][0] == result.queries
    assert_adversarial(SklearnAdapter(linear_model()), points(n), result)


def test_adapter_refusing_queries_ends_points_without_crashing() -> None:
    X = points(4)
    model = SklearnAdapter(linear_model(), budget=250)
    result = hop_skip_jump(model, X, clip=BOX, budget=10_000)
    assert model.queries <= 250
    assert result.queries == model.queries
    assert result.success_rate > 0
    assert_adversarial(SklearnAdapter(linear_model()), X, result)


def test_only_decisions_are_used() -> None:
    X = points(3)
    model = DecisionOnly(linear_model())
    result = hop_skip_jump(model, X, clip=BOX, budget=3 * 1500)
    minimum = np.abs(X @ W + B) / np.linalg.norm(W)
    assert result.success_rate == 1.0
    assert np.all(np.array(result.perturbation) <= minimum * 1.10)
    assert result.queries == model.queries


def test_targeted_attack_reaches_the_target_class() -> None:
    rng = np.random.default_rng(3)
    model = Argmax(rng.normal(size=(3, D)), np.zeros(3))
    X = points(5)
    result = hop_skip_jump(model, X, clip=BOX, budget=5 * 800, targeted=True, target="c")
    already = model.predict(X) == "c"
    assert result.success_rate == 1.0
    adv = np.array(result.adversarial)
    assert np.all(model.predict(adv) == "c")
    assert all((p == 0.0) == a for p, a in zip(result.perturbation, already, strict=True))


def test_misclassified_points_are_trivial_successes() -> None:
    X = points(4)
    model = SklearnAdapter(linear_model())
    wrong = 1 - model.predict(X)
    wrong[:2] = 1 - wrong[:2]
    result = hop_skip_jump(model, X, wrong, clip=BOX, budget=4 * 300)
    assert result.perturbation[2:] == [0.0, 0.0]
    assert result.adversarial[2:] == X[2:].tolist()
    assert all(p is not None and p > 0 for p in result.perturbation[:2])
    assert result.queries_per_point[2:] == [1, 1]


def test_curve_tracks_the_median_as_queries_are_spent() -> None:
    result = hop_skip_jump(SklearnAdapter(linear_model()), points(5), clip=BOX, budget=5 * 1000)
    spent = [q for q, _ in result.curve]
    medians = [np.inf if m is None else m for _, m in result.curve]
    assert spent == sorted(spent)
    assert medians == sorted(medians, reverse=True)
    assert result.curve[-1] == (result.queries, result.median_perturbation)
    assert len(result.examples) == 3
    assert {"original", "adversarial", "perturbation"} <= result.examples[0].keys()
    HopSkipJumpResult.model_validate_json(result.model_dump_json())


def test_same_seed_same_result_and_points_are_independent() -> None:
    X = points(3)

    def run(seed: int, rows: np.ndarray) -> HopSkipJumpResult:
        model = SklearnAdapter(linear_model())
        return hop_skip_jump(model, rows, clip=BOX, budget=len(rows) * 600, seed=seed)

    first, again, other = run(0, X), run(0, X), run(1, X)
    assert first.adversarial == again.adversarial
    assert first.curve == again.curve
    assert first.adversarial != other.adversarial
    assert run(0, X[:1]).adversarial[0] == first.adversarial[0]


def test_dataframe_columns_are_passed_to_the_model() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
    model = LogisticRegression().fit(frame, frame["a"] + frame["b"] > 0)
    result = hop_skip_jump(SklearnAdapter(model), frame.head(3), clip=(-5, 5), budget=900)
    assert result.success_rate == 1.0


@pytest.fixture(scope="module")
def phishing_gbc() -> tuple[GradientBoostingClassifier, np.ndarray]:
    data = datasets.load("phishing")
    X = data.X.to_numpy(dtype=np.float64)
    y = data.y.to_numpy()
    pick = np.random.default_rng(0).permutation(len(X))
    train, test = pick[:4000], pick[4000:4020]
    model = GradientBoostingClassifier(n_estimators=50, max_depth=3, random_state=0)
    return model.fit(X[train], y[train]), X[test]


def test_tree_ensemble_on_phishing(phishing_gbc: tuple[GradientBoostingClassifier, Any]) -> None:
    model, X = phishing_gbc
    adapter = SklearnAdapter(model)
    result = hop_skip_jump(adapter, X, clip=(-1, 1), budget=len(X) * 600)
    assert result.success_rate >= 0.9
    assert result.queries == adapter.queries <= len(X) * 600
    found = [i for i, a in enumerate(result.adversarial) if a is not None]
    adv = np.array([result.adversarial[i] for i in found])
    assert np.all((adv >= -1) & (adv <= 1))
    assert np.all(model.predict(adv) != model.predict(X[found]))
    assert result.median_perturbation is not None and 0 < result.median_perturbation < 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"X": np.zeros(3)}, "2-D"),
        ({"X": np.zeros((0, 3))}, "2-D"),
        ({"X": [["a", "b"]]}, "numbers"),
        ({"X": np.full((1, 3), np.nan)}, "finite"),
        ({"X": np.full((1, 3), 2.0)}, "inside the clip box"),
        ({"norm": "l1"}, "norm must be 'l2' or 'linf', got 'l1'"),
        ({"budget": -1}, "budget must be an integer >= 0, got -1"),
        ({"max_iter": -2}, "max_iter"),
        ({"init_evals": 0}, "init_evals"),
        ({"max_evals": 10}, "max_evals"),
        ({"gamma": 0.0}, "gamma"),
        ({"clip": (1.0, 0.0)}, "min < max"),
        ({"clip": 3}, "pair"),
        ({"clip": ([0, 0], [1, 1])}, r"arrays of 3 features, got shapes \(2,\)"),
        ({"y": [0, 1]}, "one label per row"),
        ({"targeted": True}, "needs target"),
        ({"target": 1}, "targeted=False"),
        ({"targeted": True, "target": [0, 1]}, "target must hold one label per row"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    call: dict[str, Any] = {"X": np.full((1, 3), 0.5)} | kwargs
    X = call.pop("X")
    with pytest.raises(ValueError, match=message):
        hop_skip_jump(SklearnAdapter(linear_model(np.ones(3))), X, **call)
