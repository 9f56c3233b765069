"""Label classes: positive matched by its text, stray and missing labels quarantined."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlwarden.data import (
    ColumnSchema,
    TableSchema,
    decide_classes,
    infer_schema,
    label_key,
    validate_table,
)
from mlwarden.errors import DataError


def _phishing_labels(n: int = 400) -> pd.Series:
    return pd.Series(["phishing", "legitimate"] * (n // 2), name="y", dtype=object)


@pytest.mark.parametrize("value", [1, 1.0, "1", " 1", "1.0", np.int64(1), np.float64(1.0)])
def test_label_key_makes_numbers_and_their_text_equal(value: object) -> None:
    assert label_key(value) == "1"


@pytest.mark.parametrize("positive", [1, "1"])
@pytest.mark.parametrize("column", [pd.Series([0, 1] * 50), pd.Series(["0", "1"] * 50)])
def test_positive_one_matches_a_label_read_as_numbers_or_text(
    positive: object, column: pd.Series
) -> None:
    classes = decide_classes(column.rename("y"), positive)  # type: ignore[arg-type]
    assert classes.positive == column.iloc[1]  # the value as the column holds it
    assert classes.n_classes == 2 and classes.rule == "frequency"


def test_a_stray_label_value_is_not_a_class() -> None:
    labels = _phishing_labels()
    labels[7] = "phishng"
    labels[8] = None
    classes = decide_classes(labels, "phishing")
    assert classes.classes == ["legitimate", "phishing"]
    assert classes.stray == {"phishng": 1} and classes.missing == 1


def test_the_positive_class_is_a_class_however_rare() -> None:
    labels = pd.Series(["ok"] * 999 + ["fraud"], name="y")
    assert decide_classes(labels, "fraud").classes == ["fraud", "ok"]
    with pytest.raises(DataError, match=r"1 class\(es\) \['ok'\].*'fraud' \(1 row\)"):
        decide_classes(labels)  # without positive, one row is a stray


def test_data_classes_decide_exactly() -> None:
    labels = pd.Series(["a"] * 50 + ["b"] * 50 + ["c"] * 50, name="y")
    classes = decide_classes(labels, classes=["a", "b"])
    assert classes.rule == "data.classes" and classes.stray == {"c": 50}


def test_a_declared_schema_decides_when_no_classes_are_given() -> None:
    schema = TableSchema(
        columns={"y": ColumnSchema(type="category", categories=["a", "b"])}, label="y"
    )
    labels = pd.Series(["a"] * 10 + ["b"] * 10 + ["c"] * 10, name="y")
    assert decide_classes(labels, schema=schema).stray == {"c": 10}


def test_a_positive_that_is_not_a_class_names_the_classes_and_the_strays() -> None:
    labels = _phishing_labels()
    labels[3] = "phish"
    with pytest.raises(DataError) as caught:
        decide_classes(labels, "spam")
    message = str(caught.value)
    assert "positive class 'spam' is not a class of label column 'y'" in message
    assert "['legitimate', 'phishing']" in message and "'phish' (1 row)" in message


def test_a_three_class_label_reports_its_class_count() -> None:
    labels = pd.Series(["a", "b", "c"] * 30, name="y")
    assert decide_classes(labels).n_classes == 3


def test_a_label_with_one_class_is_refused() -> None:
    with pytest.raises(DataError, match="has 1 class"):
        decide_classes(pd.Series(["a"] * 20 + ["b"], name="y"))


def test_a_label_without_values_is_refused() -> None:
    with pytest.raises(DataError, match="has no values"):
        decide_classes(pd.Series([None, None], name="y", dtype=object))


def test_validation_quarantines_stray_and_missing_labels_naming_value_and_classes() -> None:
    frame = pd.DataFrame({"x": range(400), "y": _phishing_labels()})
    frame.loc[7, "y"] = "phishng"
    frame.loc[8, "y"] = None
    schema = infer_schema(frame, label="y")
    classes = decide_classes(frame["y"], "phishing")
    accepted, quarantined, report = validate_table(frame, schema, label_classes=classes.classes)
    reasons = dict(zip(quarantined["_row"], quarantined["_reasons"], strict=True))
    expected = "expected one of ['legitimate', 'phishing']"
    assert reasons == {
        7: f"y: label 'phishng' is not a class; {expected}",
        8: f"y: missing label; {expected}",
    }
    assert report.rows_accepted == 398 and set(accepted["y"]) == {"legitimate", "phishing"}


def test_numeric_labels_stay_numbers_after_validation() -> None:
    frame = pd.DataFrame({"x": range(100), "y": [0.0, 1.0] * 50})
    frame.loc[5, "y"] = np.nan
    schema = infer_schema(frame, label="y")
    classes = decide_classes(frame["y"], "1")
    assert classes.classes == [0, 1] and classes.positive == 1
    accepted, _, report = validate_table(frame, schema, label_classes=classes.classes)
    assert report.rows_rejected == 1 and accepted["y"].dtype == np.int64


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "x", None]), min_size=1, max_size=60))
def test_rows_in_equal_accepted_plus_quarantined_with_label_classes(
    labels: list[str | None],
) -> None:
    frame = pd.DataFrame({"x": range(len(labels)), "y": pd.Series(labels, dtype=object)})
    schema = TableSchema(
        columns={"x": ColumnSchema(type="integer"), "y": ColumnSchema(type="category")},
        label="y",
    )
    accepted, quarantined, report = validate_table(frame, schema, label_classes=["a", "b"])
    assert report.rows_in == len(accepted) + len(quarantined) == len(labels)
    assert set(accepted["y"]) <= {"a", "b"}
    assert sorted(quarantined["_row"]) == [i for i, v in enumerate(labels) if v not in ("a", "b")]
