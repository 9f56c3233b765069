"""Windowed drift monitoring of served traffic: inputs and the predicted-label mix.

The last ``window`` rows are compared with a sample of the training rows every ``every`` rows,
with the same tests as ``mlwarden validate --against`` (PSI, KS, chi-squared). The comparison
runs on a background thread, so a request never waits for it; its result updates the
Prometheus gauges and counts an alarm when the window drifted.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    import pandas as pd

    from mlwarden.data import DriftThresholds, TableSchema
    from mlwarden.serve._metrics import ServerMetrics

#: Predicted-label mix PSI above which the window counts as drifted (the usual "major shift").
PREDICTION_PSI_ALARM = 0.25


class DriftState(BaseModel):
    """The latest window's verdict."""

    rows: int
    drifted_columns: list[str]
    max_psi: float
    prediction_psi: float
    input_drifted: bool
    prediction_drifted: bool


class DriftMonitor:
    """Keeps the last ``window`` rows and their predicted labels; checks them every ``every``."""

    def __init__(
        self,
        reference: pd.DataFrame,
        reference_labels: list[Any],
        schema: TableSchema | None,
        metrics: ServerMetrics,
        *,
        window: int = 500,
        every: int = 250,
        thresholds: DriftThresholds | None = None,
    ) -> None:
        from mlwarden.data import DriftReference

        self.reference = reference
        self.reference_labels = [str(v) for v in reference_labels]
        self.schema = schema
        # the reference side of every comparison, computed once (the same reports)
        self._prepared = DriftReference(reference, thresholds, schema=schema)
        self.metrics = metrics
        self.window = window
        self.every = every
        self.thresholds = thresholds
        self._rows: deque[dict[str, Any]] = deque(maxlen=window)
        self._labels: deque[str] = deque(maxlen=window)
        self._since = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlwarden-drift")
        self._pending: Future[DriftState] | None = None
        self.latest: DriftState | None = None

    def observe(self, rows: list[dict[str, Any]], labels: list[Any]) -> None:
        """Add served rows; compare once ``every`` new rows arrived and the window is full."""
        with self._lock:
            self._rows.extend(rows)
            self._labels.extend(str(v) for v in labels)
            self._since += len(rows)
            due = self._since >= self.every and len(self._rows) == self.window
            busy = self._pending is not None and not self._pending.done()
            if not due or busy:
                return
            self._since = 0
            snapshot, labels_now = list(self._rows), list(self._labels)
        self._pending = self._pool.submit(self._compare, snapshot, labels_now)

    def wait(self) -> DriftState | None:
        """Block until a running comparison finishes (tests and shutdown); the latest state."""
        pending = self._pending
        if pending is not None:
            pending.result()
        return self.latest

    def close(self) -> None:
        """Finish a running comparison and stop the worker."""
        self._pool.shutdown(wait=True)

    def _compare(self, rows: list[dict[str, Any]], labels: list[str]) -> DriftState:
        import pandas as pd

        from mlwarden.data import population_stability_index

        current = pd.DataFrame(rows, columns=list(self.reference.columns))
        report = self._prepared.compare(current)  # drift_report(reference, current, ...)
        prediction_psi = population_stability_index(
            pd.Series(self.reference_labels, dtype=object),
            pd.Series(labels, dtype=object),
            kind="categorical",
        )
        state = DriftState(
            rows=len(rows),
            drifted_columns=report.drifted_columns,
            max_psi=max((c.psi for c in report.columns), default=0.0),
            prediction_psi=prediction_psi,
            input_drifted=report.drifted,
            prediction_drifted=prediction_psi > PREDICTION_PSI_ALARM,
        )
        self.metrics.input_drift.set(len(state.drifted_columns))
        self.metrics.input_drift_psi.set(state.max_psi)
        self.metrics.prediction_drift_psi.set(prediction_psi)
        if state.input_drifted:
            self.metrics.drift_alarms.labels(kind="input").inc()
        if state.prediction_drifted:
            self.metrics.drift_alarms.labels(kind="prediction").inc()
        self.latest = state
        return state
