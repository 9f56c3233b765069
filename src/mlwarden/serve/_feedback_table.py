"""Retraining from feedback: the decision log's labelled rows as a table the pipeline reads."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

from mlwarden.errors import DataError
from mlwarden.serve._server import open_decision_log

__all__ = ["FeedbackTable", "feedback_table"]


class FeedbackTable(NamedTuple):
    """Where the feedback rows were written for the pipeline to read, and how many."""

    path: Path
    rows: int


def feedback_table(store: Path, label: str) -> FeedbackTable:
    """The decision log's labelled rows as a CSV (features and ``label``) under the store.

    The file is named by its content hash, so the same feedback makes the same source artifact
    and an unchanged retrain is a cache hit.
    """
    import pandas as pd

    log = open_decision_log(store)
    try:
        rows = log.feedback_rows()
    finally:
        log.close()
    if not rows:
        raise DataError("the decision log holds no feedback yet: POST /v1/feedback first")
    frame = pd.DataFrame([{**r.features, label: r.label} for r in rows])
    data = frame.to_csv(index=False).encode()
    folder = store / "feedback"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"feedback-{hashlib.sha256(data).hexdigest()[:16]}.csv"
    path.write_bytes(data)
    return FeedbackTable(path, len(frame))
