"""Path-finding extraction of decision trees (Tramèr et al. 2016, §4.2)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier

from mlwarden.attacks._tree_extraction import extract_tree
from mlwarden.attacks._tree_oracle import (
    CategoricalFeature,
    ContinuousFeature,
    LeafOracle,
    TreeSchema,
)
from mlwarden.errors import ModelError, QueryBudgetExceeded


def _continuous_tree(depth: int = 4, seed: int = 0) -> DecisionTreeClassifier:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (600, 4))
    y = (X[:, 0] + X[:, 1] ** 2 > 0.3).astype(int) + (X[:, 2] > 0.4).astype(int)
    return DecisionTreeClassifier(max_depth=depth, random_state=seed).fit(X, y)


_BOUNDS = TreeSchema.from_bounds([-1.0] * 4, [1.0] * 4)


def _categorical_pipeline() -> tuple[Pipeline, pd.DataFrame]:
    rng = np.random.default_rng(1)
    n = 800
    X = pd.DataFrame(
        {
            "colour": rng.choice(["red", "green", "blue", "grey"], n),
            "amount": rng.integers(0, 100, n),
            "size": rng.choice(["S", "M", "L"], n),
            "score": rng.uniform(0.0, 10.0, n),
        }
    )
    y = np.where(
        (X["colour"].isin(["red", "blue"]) & (X["amount"] > 40)) | (X["size"] == "L"),
        np.where(X["score"] > 6.0, "yes", "maybe"),
        "no",
    )
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["colour", "size"]), remainder="passthrough"
    )
    model = make_pipeline(encode, DecisionTreeClassifier(max_depth=5, random_state=0))
    return model.fit(X, y), X


class _LeafOnly:
    """An API exposing nothing but ``leaf``: no model, no tree, no classes."""

    __slots__ = ("_leaf",)

    def __init__(self, oracle: LeafOracle) -> None:
        self._leaf = oracle.leaf

    def leaf(self, X: Any) -> np.ndarray:
        return self._leaf(X)


class _LabelledOnly:
    __slots__ = ("_call",)

    def __init__(self, oracle: LeafOracle) -> None:
        self._call = oracle.leaf_and_label

    def leaf_and_label(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        return self._call(X)


@pytest.mark.parametrize("depth", [3, 4, 5])
def test_continuous_tree_recovered_leaf_for_leaf(depth: int) -> None:
    tree = _continuous_tree(depth)
    oracle = LeafOracle(tree)
    result = extract_tree(oracle, _BOUNDS, epsilon=1e-4, seed=depth)
    assert result.complete
    assert result.leaves_found == result.leaves_total == tree.get_n_leaves()
    true_leaves = set(np.flatnonzero(tree.tree_.children_left == -1).tolist())
    assert result.tree is not None
    assert {leaf.leaf_id for leaf in result.tree.leaves} == true_leaves
    assert result.fidelity_uniform is not None and result.fidelity_uniform >= 0.999
    assert result.queries == oracle.queries == result.queries_to_extract
    # Leaf for leaf on fresh points: the copy names the same leaf as the target.
    X = np.random.default_rng(9).uniform(-1.0, 1.0, (5000, 4))
    assert np.mean(result.tree.leaf(X) == tree.apply(X)) >= 0.999


def test_categorical_pipeline_recovered() -> None:
    model, X = _categorical_pipeline()
    schema = TreeSchema.from_frame(X)
    assert isinstance(schema.features[0], CategoricalFeature)
    assert isinstance(schema.features[1], ContinuousFeature) and schema.features[1].integer
    result = extract_tree(LeafOracle(model), schema, X_test=X, seed=3)
    assert result.complete
    assert result.leaves_found == result.leaves_total
    assert result.fidelity_test == 1.0
    assert result.fidelity_uniform is not None and result.fidelity_uniform >= 0.999
    assert result.tree is not None
    assert set(result.tree.predict(X)) <= {"yes", "maybe", "no"}
    assert result.examples and "constraints" in result.examples[0]


def test_attack_reads_only_the_leaf_api() -> None:
    tree = _continuous_tree(4)
    oracle = LeafOracle(tree)
    result = extract_tree(_LeafOnly(oracle), _BOUNDS, epsilon=1e-4, target=tree)
    assert result.leaves_found == tree.get_n_leaves()
    assert result.fidelity_uniform is not None and result.fidelity_uniform >= 0.999
    assert result.tree is not None
    with pytest.raises(ModelError):
        result.tree.predict(np.zeros((1, 4)))
    # With classes from the same answers, the copy predicts as the target does.
    result = extract_tree(_LabelledOnly(LeafOracle(tree)), _BOUNDS, epsilon=1e-4, target=tree)
    assert result.fidelity_uniform is not None and result.fidelity_uniform >= 0.999


def test_confidence_only_api() -> None:
    rng = np.random.default_rng(4)
    X = rng.uniform(0.0, 1.0, (400, 2))
    y = (X[:, 0] + 0.3 * rng.standard_normal(400) > 0.5).astype(int)
    tree = DecisionTreeClassifier(max_depth=3, min_samples_leaf=20, random_state=0).fit(X, y)
    values = tree.tree_.value[tree.tree_.children_left == -1, 0, :]
    assert len({tuple(np.round(v, 9)) for v in values}) == tree.get_n_leaves()  # assumption
    oracle = LeafOracle(tree, identify="confidence")
    result = extract_tree(oracle, TreeSchema.from_bounds([0, 0], [1, 1]), epsilon=1e-4)
    assert result.leaves_found == tree.get_n_leaves()
    assert result.fidelity_uniform is not None and result.fidelity_uniform >= 0.999


@pytest.mark.parametrize("budget", [0, 1, 5, 40, 150])
@pytest.mark.parametrize("where", ["attack", "oracle"])
def test_budget_never_exceeded(budget: int, where: str) -> None:
    tree = _continuous_tree(5)
    oracle = LeafOracle(tree, budget=budget if where == "oracle" else None)
    result = extract_tree(oracle, _BOUNDS, budget=budget if where == "attack" else None)
    assert oracle.queries <= budget
    assert result.queries == oracle.queries
    assert not result.complete
    assert result.leaves_found <= tree.get_n_leaves()


def test_oracle_budget_refuses_whole_call() -> None:
    oracle = LeafOracle(_continuous_tree(3), budget=3)
    oracle.leaf(np.zeros((2, 4)))
    with pytest.raises(QueryBudgetExceeded):
        oracle.leaf(np.zeros((2, 4)))
    assert oracle.queries == 2


def test_rejects_non_tree() -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(np.array([[0.0], [1.0]]), [0, 1])
    with pytest.raises(ModelError):
        LeafOracle(model)
    with pytest.raises(ValueError):
        ContinuousFeature("x", 1.0, 0.0)
