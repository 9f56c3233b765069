"""What the tree-extraction attacker knows and asks: the input schema, and a leaf-naming API.

The schema bounds the box each leaf is recovered in; the oracle (:class:`LeafOracle`, or any
:class:`LeafAPI`) answers each query row with the identity of the leaf that decided it, as
BigML did (Tramèr et al., USENIX Security 2016, §4.2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from mlwarden.errors import ModelError, ParameterError, QueryBudgetExceeded

__all__ = [
    "CategoricalFeature",
    "ContinuousFeature",
    "LabelledLeafAPI",
    "LeafAPI",
    "LeafOracle",
    "TreeSchema",
]

FloatArray = NDArray[np.float64]


# --------------------------------------------------------------------------------- the schema


@dataclass(frozen=True)
class ContinuousFeature:
    """A numeric feature the attacker may set anywhere in ``[low, high]``.

    With ``integer`` the feature takes whole values only, and boundaries are found exactly.
    """

    name: str
    low: float
    high: float
    integer: bool = False

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ParameterError(f"feature {self.name!r}: low {self.low} exceeds high {self.high}")


@dataclass(frozen=True)
class CategoricalFeature:
    """A feature taking one of ``categories``."""

    name: str
    categories: tuple[Any, ...]

    def __post_init__(self) -> None:
        if len(self.categories) == 0:
            raise ParameterError(f"feature {self.name!r} has no categories")


Feature = ContinuousFeature | CategoricalFeature


@dataclass(frozen=True)
class TreeSchema:
    """The input space the attacker knows: features in the model's column order.

    Internally a point is a float vector: the value of each continuous feature and the index
    into ``categories`` of each categorical one. ``as_frame`` decides what the model is sent:
    a DataFrame with the feature names as columns (True) or a plain float array (False, only
    when every feature is continuous).
    """

    features: tuple[Feature, ...]
    as_frame: bool = True

    @classmethod
    def from_frame(cls, X: pd.DataFrame, categorical: Sequence[str] | None = None) -> TreeSchema:
        """Read a schema off a table: ranges from each column's min and max.

        Columns named in ``categorical``, or else of a non-numeric or boolean dtype, are
        categorical (categories sorted as strings); integer columns are integer features.
        """
        features: list[Feature] = []
        for name in X.columns:
            column = X[name]
            is_cat = (
                name in categorical
                if categorical is not None
                else (
                    not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
                )
            )
            if is_cat:
                cats = sorted(pd.unique(column.dropna()), key=str)
                features.append(CategoricalFeature(str(name), tuple(cats)))
            else:
                features.append(
                    ContinuousFeature(
                        str(name),
                        float(column.min()),
                        float(column.max()),
                        integer=bool(pd.api.types.is_integer_dtype(column)),
                    )
                )
        return cls(tuple(features), as_frame=True)

    @classmethod
    def from_bounds(cls, low: Sequence[float], high: Sequence[float]) -> TreeSchema:
        """All-continuous schema for a model fitted on a plain array (sent a float array)."""
        feats = tuple(
            ContinuousFeature(f"x{i}", float(lo), float(hi))
            for i, (lo, hi) in enumerate(zip(low, high, strict=True))
        )
        return cls(feats, as_frame=False)

    @property
    def names(self) -> list[str]:
        """Feature names, in order."""
        return [f.name for f in self.features]

    def sample(self, n: int, rng: np.random.Generator) -> FloatArray:
        """``n`` points drawn uniformly from the input space, as internal codes."""
        cols: list[FloatArray] = []
        for f in self.features:
            if isinstance(f, CategoricalFeature):
                cols.append(rng.integers(0, len(f.categories), n).astype(float))
            elif f.integer:
                cols.append(rng.integers(math.ceil(f.low), math.floor(f.high) + 1, n).astype(float))
            else:
                cols.append(rng.uniform(f.low, f.high, n))
        return np.column_stack(cols) if cols else np.empty((n, 0))

    def decode(self, codes: FloatArray) -> pd.DataFrame | FloatArray:
        """Internal codes to what the model is sent."""
        codes = np.atleast_2d(codes)
        if not self.as_frame:
            return np.asarray(codes, dtype=float)
        data: dict[str, Any] = {}
        for j, f in enumerate(self.features):
            if isinstance(f, CategoricalFeature):
                cats = np.empty(len(f.categories), dtype=object)
                cats[:] = list(f.categories)
                data[f.name] = cats[codes[:, j].astype(int)]
            elif f.integer:
                data[f.name] = codes[:, j].astype(np.int64)
            else:
                data[f.name] = codes[:, j]
        return pd.DataFrame(data)

    def encode(self, X: pd.DataFrame | NDArray[Any]) -> FloatArray:
        """Model inputs to internal codes (an unknown category becomes -1)."""
        if not isinstance(X, pd.DataFrame):
            return np.asarray(X, dtype=float).reshape(len(X), len(self.features))
        cols: list[FloatArray] = []
        for f in self.features:
            column = X[f.name]
            if isinstance(f, CategoricalFeature):
                index = {str(c): i for i, c in enumerate(f.categories)}
                cols.append(np.array([index.get(str(v), -1) for v in column], dtype=float))
            else:
                cols.append(np.asarray(column, dtype=float))
        return np.column_stack(cols)


# --------------------------------------------------------------------------------- the oracle


@runtime_checkable
class LeafAPI(Protocol):
    """All the attack needs: the identity of the leaf deciding each row."""

    def leaf(self, X: Any) -> NDArray[Any]: ...


@runtime_checkable
class LabelledLeafAPI(Protocol):
    """An API answering each row with its leaf identity and predicted class, as BigML did."""

    def leaf_and_label(self, X: Any) -> tuple[NDArray[Any], NDArray[Any]]: ...


def split_pipeline(model: Any) -> tuple[Callable[[Any], Any], Any]:
    """The preprocessing (a transform) and the final tree of a tree or a Pipeline."""
    from sklearn.pipeline import Pipeline
    from sklearn.tree import DecisionTreeClassifier

    if isinstance(model, Pipeline):
        prefix, final = model[:-1], model.steps[-1][1]

        def transform(X: Any) -> Any:
            return prefix.transform(X)
    else:
        final = model

        def transform(X: Any) -> Any:
            return X

    if not isinstance(final, DecisionTreeClassifier):
        raise ModelError(
            f"{type(final).__name__} is not a DecisionTreeClassifier: leaves cannot be named"
        )
    return transform, final


class LeafOracle:
    """A prediction API over a fitted tree that names the leaf deciding each row.

    Wraps a fitted ``DecisionTreeClassifier`` or a Pipeline ending in one (its preprocessing,
    one-hot encoding of categoricals say, runs first). Each row counts as one query; with a
    ``budget``, a call that would exceed it is refused whole, before the model runs, with
    :class:`~mlwarden.errors.QueryBudgetExceeded` (as :class:`SklearnAdapter` does).

    ``identify="leaf"`` returns the leaf's node id (scikit-learn's ``apply``).
    ``identify="confidence"`` is the weaker API that returns only the class-probability
    vector: a leaf is then named by its rounded probabilities, assuming, as Tramèr et al. do
    for BigML, that distinct leaves have distinct confidence values. Where two leaves share
    one (two pure leaves, say), the attack merges them and may miss leaves.
    """

    def __init__(
        self,
        model: Any,
        budget: int | None = None,
        identify: Literal["leaf", "confidence"] = "leaf",
        decimals: int = 9,
    ) -> None:
        if budget is not None and budget < 0:
            raise ParameterError(f"budget must be a non-negative number of queries, got {budget}")
        if identify not in ("leaf", "confidence"):
            raise ParameterError(f"identify must be 'leaf' or 'confidence', got {identify!r}")
        self._transform, self._tree = split_pipeline(model)
        self.model = model
        self.budget = budget
        self.identify = identify
        self.decimals = decimals
        self._queries = 0

    @property
    def queries(self) -> int:
        """Rows queried so far."""
        return self._queries

    def _spend(self, n: int) -> None:
        if self.budget is not None and self._queries + n > self.budget:
            raise QueryBudgetExceeded(
                f"query budget of {self.budget} rows would be exceeded: "
                f"{self._queries} spent, {n} asked"
            )
        self._queries += n

    def _inputs(self, X: Any) -> Any:
        named = hasattr(self.model, "feature_names_in_")
        if isinstance(X, pd.DataFrame) and not named:
            return X.to_numpy(dtype=float)
        return X

    def leaf_and_label(self, X: Any) -> tuple[NDArray[Any], NDArray[Any]]:
        """Leaf identity and predicted class of each row (one query per row)."""
        self._spend(len(X))
        Xt = self._transform(self._inputs(X))
        proba = np.asarray(self._tree.predict_proba(Xt))
        labels = np.asarray(self._tree.classes_)[np.argmax(proba, axis=1)]
        if self.identify == "leaf":
            ids: NDArray[Any] = np.asarray(self._tree.apply(Xt))
        else:
            rounded = np.round(proba, self.decimals)
            ids = np.array(["|".join(f"{p:.{self.decimals}f}" for p in row) for row in rounded])
        return ids, labels

    def leaf(self, X: Any) -> NDArray[Any]:
        """Leaf identity of each row (one query per row)."""
        return self.leaf_and_label(X)[0]
