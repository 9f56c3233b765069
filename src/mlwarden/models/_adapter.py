"""The model adapter: the one interface attacks and checks use, counting every query."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from mlwarden.errors import ModelError, QueryBudgetExceeded

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


class SklearnAdapter:
    """Wraps any fitted scikit-learn classifier or Pipeline with ``predict_proba``.

    Each row sent to the model counts as one query. With a ``budget``, a call that would
    exceed it is refused whole, before the model runs, as a rate-limited API would refuse it.
    """

    def __init__(self, estimator: Any, budget: int | None = None) -> None:
        if not hasattr(estimator, "predict_proba"):
            raise ModelError(f"{type(estimator).__name__} has no predict_proba")
        if budget is not None and budget < 0:
            raise ValueError(f"budget must be a non-negative number of queries, got {budget}")
        self.estimator = estimator
        self.budget = budget
        self._queries = 0

    @property
    def classes_(self) -> np.ndarray:
        """Class labels in the column order of ``predict_proba``."""
        import numpy as np

        return np.asarray(self.estimator.classes_)

    @property
    def queries(self) -> int:
        """Rows queried so far."""
        return self._queries

    def _spend(self, X: Any) -> None:
        n = len(X)
        if self.budget is not None and self._queries + n > self.budget:
            raise QueryBudgetExceeded(
                f"query budget of {self.budget} rows would be exceeded: "
                f"{self._queries} spent, {n} asked"
            )
        self._queries += n

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Class probabilities, one row per input row."""
        import numpy as np

        self._spend(X)
        return np.asarray(self.estimator.predict_proba(X))

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Predicted class labels."""
        import numpy as np

        proba = self.predict_proba(X)
        return np.asarray(self.classes_[np.argmax(proba, axis=1)])
