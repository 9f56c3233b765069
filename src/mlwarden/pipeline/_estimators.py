"""The estimators a spec may name, and the model pipeline built for one.

Naming and checking parameters reads only the catalogue; scikit-learn is imported when a
pipeline is built, so that loading a spec stays free of it.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from mlwarden.data import TableSchema

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

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

MODEL_STEP = "model"


def estimator_class(name: str) -> type[Any]:
    """The scikit-learn(-compatible) class behind an estimator name."""
    module, _, cls = ESTIMATORS[name][0].rpartition(".")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


@cache
def estimator_parameters(name: str) -> frozenset[str]:
    """The constructor parameters of an estimator name."""
    return frozenset(estimator_class(name)().get_params())


def build_estimator(name: str, params: dict[str, Any], schema: TableSchema, seed: int) -> Pipeline:
    """A Pipeline: impute (and scale) numbers, impute and one-hot categories, then the model."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    scale = ESTIMATORS[name][1]
    numeric = [c for c in schema.features if schema.columns[c].is_numeric]
    categorical = [c for c in schema.features if not schema.columns[c].is_numeric]
    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if scale:
        numeric_steps.append(("scale", StandardScaler()))
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(("numeric", Pipeline(numeric_steps), numeric))
    if categorical:
        categories = Pipeline(
            [
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("categorical", categories, categorical))
    model_params = dict(params)
    if "random_state" in estimator_parameters(name):
        model_params.setdefault("random_state", seed)
    model = estimator_class(name)(**model_params)
    return Pipeline(
        [("prepare", ColumnTransformer(transformers, remainder="drop")), (MODEL_STEP, model)]
    )
