"""Names of the estimators a spec may use, and their parameters, without importing them all."""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any, Literal

EstimatorName = Literal[
    "gradient_boosting",
    "hist_gradient_boosting",
    "random_forest",
    "extra_trees",
    "decision_tree",
    "logistic_regression",
    "mlp",
    "dp_sgd",
]

# name -> (import path of the class, whether numeric inputs should be standardised)
ESTIMATORS: dict[str, tuple[str, bool]] = {
    "gradient_boosting": ("sklearn.ensemble.GradientBoostingClassifier", False),
    "hist_gradient_boosting": ("sklearn.ensemble.HistGradientBoostingClassifier", False),
    "random_forest": ("sklearn.ensemble.RandomForestClassifier", False),
    "extra_trees": ("sklearn.ensemble.ExtraTreesClassifier", False),
    "decision_tree": ("sklearn.tree.DecisionTreeClassifier", False),
    "logistic_regression": ("sklearn.linear_model.LogisticRegression", True),
    "mlp": ("sklearn.neural_network.MLPClassifier", True),
    # DP-SGD (Opacus; extra "dp"): logistic regression or a one-hidden-layer network
    "dp_sgd": ("mlwarden.models._dp.DPSGDClassifier", True),
}


def estimator_class(name: str) -> type[Any]:
    """The scikit-learn(-compatible) class behind an estimator name."""
    module, _, cls = ESTIMATORS[name][0].rpartition(".")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


@cache
def estimator_parameters(name: str) -> frozenset[str]:
    """The constructor parameters of an estimator name."""
    return frozenset(estimator_class(name)().get_params())
