"""Duplicate rows in a table and test rows that copy a training row.

A table with many repeated rows splits into a test set that shares rows with training, and
every held-out score then partly measures memory instead of generalisation. Rows are compared
by a 64-bit hash of their values (pandas' ``hash_pandas_object``), one vectorised pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class Duplicates(BaseModel):
    """How many rows repeat an earlier row, and how many share features but not the label."""

    rows: int
    duplicate_rows: int
    duplicate_share: float
    conflicting_rows: int
    conflicting_share: float
    policy: Literal["report", "drop"] = "report"
    dropped: int = 0


class Overlap(BaseModel):
    """How many test rows have the features of some training row (the model saw that input)."""

    test_rows: int
    seen_in_training: int
    seen_share: float
    unseen_rows: int


def row_hashes(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """One 64-bit hash per row of ``frame[columns]``; equal rows get equal hashes."""
    import numpy as np
    import pandas as pd

    if not len(columns):
        return np.zeros(len(frame), dtype=np.uint64)
    return pd.util.hash_pandas_object(frame[list(columns)], index=False).to_numpy()


def find_duplicates(
    frame: pd.DataFrame, label: str, columns: Sequence[str] | None = None
) -> tuple[Duplicates, np.ndarray]:
    """Count repeated rows of ``frame`` (over ``columns``, default all, label included).

    Returns the counts and a mask of the rows that repeat an earlier one (the first copy is not
    marked). ``conflicting_rows`` counts the rows whose features occur with more than one label.
    """
    names = list(columns) if columns is not None else [str(c) for c in frame.columns]
    features = [c for c in names if c != label]
    return duplicates_of(
        row_hashes(frame, features), row_hashes(frame, [label] if label in names else [])
    )


def duplicates_of(features: np.ndarray, labels: np.ndarray) -> tuple[Duplicates, np.ndarray]:
    """:func:`find_duplicates` from each row's hash of its features and of its label.

    For a table read in batches: hash each batch (:func:`row_hashes`), then decide here.
    """
    import pandas as pd

    n = len(features)
    keyed = pd.DataFrame({"x": features, "y": labels}, copy=False)
    repeated = keyed.duplicated().to_numpy()  # same features and same label
    labels_per_input = keyed.groupby("x")["y"].transform("nunique").to_numpy()
    conflicting = int((labels_per_input > 1).sum())
    count = int(repeated.sum())
    report = Duplicates(
        rows=n,
        duplicate_rows=count,
        duplicate_share=count / n if n else 0.0,
        conflicting_rows=conflicting,
        conflicting_share=conflicting / n if n else 0.0,
    )
    return report, repeated


def seen_in_training(
    train: pd.DataFrame, test: pd.DataFrame, features: Sequence[str]
) -> tuple[Overlap, np.ndarray]:
    """Mark the test rows whose ``features`` equal those of some training row, and count them."""
    import numpy as np

    seen = np.isin(row_hashes(test, features), row_hashes(train, features))
    count, n = int(seen.sum()), len(test)
    overlap = Overlap(
        test_rows=n,
        seen_in_training=count,
        seen_share=count / n if n else 0.0,
        unseen_rows=n - count,
    )
    return overlap, seen
