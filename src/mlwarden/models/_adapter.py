"""The model adapter: the one interface attacks and checks use, counting every query."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mlwarden.errors import (
    DataError,
    MlwardenError,
    ModelError,
    ParameterError,
    QueryBudgetExceeded,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


@runtime_checkable
class ModelAdapter(Protocol):
    """What every model offers: class probabilities, decisions, classes, and a query count."""

    @property
    def classes_(self) -> np.ndarray: ...

    @property
    def queries(self) -> int: ...

    def predict_proba(self, X: Any) -> np.ndarray: ...

    def predict(self, X: Any) -> np.ndarray: ...


@runtime_checkable
class HasGradient(Protocol):
    """A model that offers the gradient of its loss with respect to its input (white-box)."""

    def loss_gradient(self, X: Any, y: Any) -> np.ndarray: ...


class MeteredModel(ABC):
    """What every adapter shares: a query count, an optional budget, and ``predict`` as the
    argmax of ``predict_proba``. Subclasses call ``_spend(n)`` before they run the model."""

    def __init__(self, budget: int | None = None) -> None:
        if budget is not None and budget < 0:
            raise ParameterError(f"budget must be a non-negative number of queries, got {budget}")
        self.budget = budget
        self._queries = 0

    @property
    def queries(self) -> int:
        """Rows queried so far."""
        return self._queries

    @property
    @abstractmethod
    def classes_(self) -> np.ndarray:
        """Class labels in the column order of ``predict_proba``."""

    def _spend(self, n: int) -> None:
        """Count ``n`` rows, refusing the whole call if it would pass the budget."""
        if self.budget is not None and self._queries + n > self.budget:
            raise QueryBudgetExceeded(
                f"query budget of {self.budget} rows would be exceeded: "
                f"{self._queries} spent, {n} asked"
            )
        self._queries += n

    @abstractmethod
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, one row per input row."""

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels."""
        import numpy as np

        proba = self.predict_proba(X)
        return np.asarray(self.classes_[np.argmax(proba, axis=1)])


def finite_probabilities(proba: np.ndarray) -> np.ndarray:
    """``proba`` as float64, refused when a row is not finite (mostly a NaN or infinite input)."""
    import numpy as np

    values = np.asarray(proba, dtype=np.float64)
    bad = ~np.isfinite(values).all(axis=1) if values.ndim == 2 else ~np.isfinite(values)
    if np.any(bad):
        raise DataError(
            f"the model answered NaN or infinite probabilities for {int(bad.sum())} of "
            f"{len(values)} rows; inputs must be finite numbers"
        )
    return values


class SklearnAdapter(MeteredModel):
    """Wraps any fitted scikit-learn classifier or Pipeline with ``predict_proba`` (or, failing
    that, ``decision_function``, whose scores are mapped to [0, 1] by a logistic or softmax).

    Each row sent to the model counts as one query. With a ``budget``, a call that would
    exceed it is refused whole, before the model runs, as a rate-limited API would refuse it.
    """

    def __init__(self, estimator: Any, budget: int | None = None) -> None:
        if not (hasattr(estimator, "predict_proba") or hasattr(estimator, "decision_function")):
            raise ModelError(
                f"{type(estimator).__name__} has neither predict_proba nor decision_function"
            )
        super().__init__(budget)
        self.estimator = estimator

    @property
    def classes_(self) -> np.ndarray:
        """Class labels in the column order of ``predict_proba``."""
        import numpy as np

        return np.asarray(self.estimator.classes_)

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Class probabilities, one row per input row."""
        import numpy as np

        self._spend(len(X))
        try:
            if hasattr(self.estimator, "predict_proba"):
                return np.asarray(self.estimator.predict_proba(X))
            # Scores only (an SVM, say): a logistic or softmax of them ranks and decides the
            # same; the values are scores, not calibrated probabilities.
            scores = np.asarray(self.estimator.decision_function(X), dtype=float)
        except MlwardenError:
            raise
        except ValueError as exc:  # scikit-learn's own input checks name what they expect
            raise DataError(f"{type(self.estimator).__name__} refused the input: {exc}") from exc
        if scores.ndim == 1:
            positive = 1.0 / (1.0 + np.exp(-scores))
            return np.column_stack([1.0 - positive, positive])
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))

    def _linear_parts(self) -> tuple[np.ndarray, np.ndarray, Any]:
        """Input scale and offset of leading StandardScalers, and the final linear model."""
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        steps = self.estimator.steps if isinstance(self.estimator, Pipeline) else [
            ("model", self.estimator)
        ]  # fmt: skip
        *prep, (_, final) = steps
        if not isinstance(final, LogisticRegression) or not all(
            isinstance(step, StandardScaler) or step == "passthrough" for _, step in prep
        ):
            raise ModelError(
                f"{type(self.estimator).__name__} offers no input gradient: only logistic "
                "regression (optionally after StandardScaler) is differentiable here"
            )
        n = final.coef_.shape[1]
        scale, offset = np.ones(n), np.zeros(n)
        for _, step in prep:
            if isinstance(step, StandardScaler):
                s = step.scale_ if step.scale_ is not None else np.ones(n)
                m = step.mean_ if step.mean_ is not None else np.zeros(n)
                offset = (offset - m) / s
                scale = scale / s
        return scale, offset, final

    @property
    def has_gradient(self) -> bool:
        """Whether :meth:`loss_gradient` works for this estimator."""
        try:
            self._linear_parts()
        except ModelError:
            return False
        return True

    def loss_gradient(self, X: pd.DataFrame | np.ndarray, y: Any) -> np.ndarray:
        """Gradient of each row's cross-entropy loss with respect to its inputs.

        Closed form for logistic regression: ``(p - onehot(y)) @ W``, chained through any
        StandardScaler in front. Counts one query per row, like a prediction.
        """
        import numpy as np

        scale, _, final = self._linear_parts()
        proba = self.predict_proba(X)
        classes = list(self.classes_)
        index = np.array([classes.index(label) for label in np.asarray(y)])
        if proba.shape[1] == 2 and final.coef_.shape[0] == 1:
            weights = np.vstack([-final.coef_[0] / 2, final.coef_[0] / 2])
        else:
            weights = final.coef_
        residual = proba.copy()
        residual[np.arange(len(index)), index] -= 1.0
        return np.asarray((residual @ weights) * scale)
