"""The model pipeline built for a spec: preprocessing chosen from the schema, then the estimator."""

from __future__ import annotations

from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlwarden.data import TableSchema
from mlwarden.pipeline._catalogue import ESTIMATORS, estimator_class, estimator_parameters

MODEL_STEP = "model"


def build_estimator(name: str, params: dict[str, Any], schema: TableSchema, seed: int) -> Pipeline:
    """A Pipeline: impute (and scale) numbers, impute and one-hot categories, then the model."""
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
