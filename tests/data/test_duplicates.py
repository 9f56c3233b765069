"""Duplicate rows and test rows that copy a training row."""

from __future__ import annotations

import pandas as pd

from mlwarden.data import find_duplicates, seen_in_training


def test_duplicates_and_conflicting_labels_are_counted() -> None:
    frame = pd.DataFrame(
        {"a": [1, 1, 1, 2, 3, 3], "b": ["x", "x", "x", "y", "z", "z"], "y": [0, 0, 1, 1, 0, 0]}
    )
    report, repeated = find_duplicates(frame, "y")
    assert repeated.tolist() == [False, True, False, False, False, True]
    assert (report.duplicate_rows, report.duplicate_share) == (2, 2 / 6)
    assert report.conflicting_rows == 3  # rows 0-2: features (1, x) with labels 0 and 1


def test_a_table_without_duplicates() -> None:
    frame = pd.DataFrame({"a": range(10), "y": [0, 1] * 5})
    report, repeated = find_duplicates(frame, "y")
    assert report.duplicate_rows == report.conflicting_rows == 0 and not repeated.any()


def test_test_rows_with_a_training_rows_features_are_seen() -> None:
    train = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    test = pd.DataFrame({"a": [1, 2, 4, 3], "b": ["x", "q", "z", "z"]})
    overlap, seen = seen_in_training(train, test, ["a", "b"])
    assert seen.tolist() == [True, False, False, True]
    assert (overlap.test_rows, overlap.seen_in_training, overlap.unseen_rows) == (4, 2, 2)
    assert overlap.seen_share == 0.5
