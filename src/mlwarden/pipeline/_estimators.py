"""The estimators a spec may name, and the preprocessing built for them from the schema."""

from __future__ import annotations

from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier

from mlwarden.data import TableSchema
from mlwarden.errors import SpecError

# name -> (class, whether numeric inputs should be standardised)
ESTIMATORS: dict[str, tuple[type[Any], bool]] = {
    "gradient_boosting": (GradientBoostingClassifier, False),
    "hist_gradient_boosting": (HistGradientBoostingClassifier, False),
    "random_forest": (RandomForestClassifier, False),
    "extra_trees": (ExtraTreesClassifier, False),
    "decision_tree": (DecisionTreeClassifier, False),
    "logistic_regression": (LogisticRegression, True),
    "mlp": (MLPClassifier, True),
}
MODEL_STEP = "model"


def build_estimator(
    name: str, params: dict[str, Any], schema: TableSchema, seed: int
) -> Pipeline:
    """A Pipeline: impute (and scale) numbers, impute and one-hot categories, then the model."""
    cls, scale = ESTIMATORS[name]
    numeric = [c for c in schema.features if schema.columns[c].is_numeric]
    categorical = [c for c in schema.features if not schema.columns[c].is_numeric]
    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if scale:
        numeric_steps.append(("scale", StandardScaler()))
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(("numeric", Pipeline(numeric_steps), numeric))
    if categorical:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                categorical,
            )
        )
    model_params = dict(params)
    if "random_state" in cls().get_params():
        model_params.setdefault("random_state", seed)
    try:
        model = cls(**model_params)
        model.get_params()
    except TypeError as exc:
        raise SpecError(f"train.params: {name} does not accept these parameters: {exc}") from exc
    return Pipeline(
        [("prepare", ColumnTransformer(transformers, remainder="drop")), (MODEL_STEP, model)]
    )


def check_grid(name: str, grid: dict[str, list[Any]]) -> None:
    """Refuse grid keys the estimator does not have, naming the ones it does."""
    cls, _ = ESTIMATORS[name]
    known = set(cls().get_params())
    unknown = sorted(set(grid) - known)
    if unknown:
        raise SpecError(
            f"train.grid: {name} has no parameter(s) {unknown}; it has {sorted(known)}"
        )
