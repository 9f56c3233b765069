"""A model that remembers every row it was asked: an attack's query stream, for replay."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlwarden.models._adapter import MeteredModel, ModelAdapter, SklearnAdapter

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class RecordingModel(MeteredModel):
    """Answers like ``model`` (an adapter, or a fitted estimator to wrap) and keeps, in order,
    every row an attack sent, so detectors can be evaluated on the real stream."""

    def __init__(self, model: ModelAdapter | Any, budget: int | None = None) -> None:
        super().__init__(budget)
        self.inner = model if isinstance(model, ModelAdapter) else SklearnAdapter(model)
        self.asked: list[pd.DataFrame] = []

    @property
    def classes_(self) -> np.ndarray:
        """The wrapped model's classes."""
        return self.inner.classes_

    def predict_proba(self, X: Any) -> np.ndarray:
        """The wrapped model's answer; the rows are recorded first."""
        import pandas as pd

        self._spend(len(X))
        self.asked.append(pd.DataFrame(X).reset_index(drop=True))
        return self.inner.predict_proba(X)

    def rows(self) -> pd.DataFrame:
        """Every row asked so far, in order."""
        import pandas as pd

        return pd.concat(self.asked, ignore_index=True)
