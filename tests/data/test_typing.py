"""Reading and typing a table: separators, empty tables, numbers stored with a few typos."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlwarden.data import (
    ColumnSchema,
    TableSchema,
    detect_separator,
    infer_column,
    infer_schema,
    read_csv_table,
    validate_table,
    widen,
)
from mlwarden.errors import DataError


def _numbers_with_typos(n: int = 1250) -> pd.Series:
    rng = np.random.default_rng(0)
    values = rng.normal(50, 10, n).round(2).astype(object)
    values[[3, 500, 900]] = ["unknown", "12,5", "?"]
    return pd.Series(values, name="x")


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_the_separator_is_detected(sep: str) -> None:
    text = sep.join(["a", "b", "c"]) + "\n" + sep.join(["1", "x y", "2.5"]) + "\n"
    assert detect_separator(text.encode()) == sep
    frame = read_csv_table(text.encode(), "t.csv")
    assert list(frame.columns) == ["a", "b", "c"] and frame.shape == (1, 3)


def test_a_comma_file_with_semicolons_inside_values_stays_comma() -> None:
    text = b'a,b\n1,"x;y;z"\n2,w;v\n'
    assert detect_separator(text) == ","


def test_a_semicolon_file_read_as_commas_when_told() -> None:
    frame = read_csv_table(b"a;b\n1;2\n", "t.csv", sep=",")
    assert list(frame.columns) == ["a;b"]


def test_a_typo_deep_in_a_large_file_gives_the_column_one_type_that_validation_can_read() -> None:
    # pandas types a large file chunk by chunk by default: ints before the typo, text after,
    # which the pipeline's Parquet writer refused (ingest crashed, nothing quarantined)
    rows = 300_000
    lines = [f"{i % 7},{i % 2}" for i in range(rows)]
    lines[280_000] = "oops,1"
    frame = read_csv_table(("x,y\n" + "\n".join(lines) + "\n").encode(), "big.csv")
    assert {type(v) for v in frame["x"]} == {str}
    frame.to_parquet(pd.io.common.BytesIO())  # what ingest stores
    schema = TableSchema(
        columns={
            "x": ColumnSchema(type="integer", min=0, max=10),
            "y": ColumnSchema(type="integer"),
        }
    )
    accepted, quarantined, _ = validate_table(frame, schema)
    assert quarantined["_row"].tolist() == [280_000]
    assert set(quarantined["_reasons"]) == {"x: not a number"}
    assert len(accepted) == rows - 1 and accepted["x"].dtype.kind in "iu"


def test_a_header_only_file_says_zero_data_rows() -> None:
    with pytest.raises(DataError, match=r"t\.csv has a header \(3 columns\) but 0 data rows"):
        read_csv_table(b"a,b,y\n", "t.csv")


def test_an_empty_file_says_so() -> None:
    with pytest.raises(DataError, match=r"t\.csv is empty"):
        read_csv_table(b"", "t.csv")


def test_a_number_column_with_a_few_typos_stays_numeric_and_says_what_it_saw() -> None:
    column = infer_column(_numbers_with_typos())
    assert column.type == "float"
    assert column.non_numeric_rate == pytest.approx(3 / 1250)
    assert column.non_numeric_examples == ["unknown", "12,5", "?"]
    assert column.min is not None and column.max is not None and column.min < 50 < column.max


def test_the_typo_rows_are_quarantined_as_not_a_number_and_the_rest_typed() -> None:
    frame = pd.DataFrame({"x": _numbers_with_typos(), "y": ["a", "b"] * 625})
    schema = infer_schema(frame, label="y")
    accepted, quarantined, report = validate_table(frame, schema)
    assert report.rows_in == 1250 == report.rows_accepted + report.rows_rejected
    assert sorted(quarantined["_row"]) == [3, 500, 900]
    assert set(quarantined["_reasons"]) == {"x: not a number"}
    assert accepted["x"].dtype == np.float64


def test_a_text_column_with_some_numbers_stays_text() -> None:
    values = pd.Series(["1", "2", "3", "low", "high"] * 20)
    assert infer_column(values).type == "category"


def test_margin_widens_numeric_feature_ranges_not_the_label() -> None:
    frame = pd.DataFrame({"x": [10.0, 20.0, 30.0], "n": [1, 5, 11], "y": [0, 1, 1]})
    plain = infer_schema(frame, label="y")
    wide = infer_schema(frame, label="y", margin=0.1)
    assert (plain.columns["x"].min, plain.columns["x"].max) == (10.0, 30.0)
    assert (wide.columns["x"].min, wide.columns["x"].max) == (8.0, 32.0)
    assert (wide.columns["n"].min, wide.columns["n"].max) == (0.0, 12.0)  # whole, >= 0
    assert (wide.columns["y"].min, wide.columns["y"].max) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("low", "high", "margin", "kind", "expected"),
    [
        (-5.0, 5.0, 0.5, "float", (-10.0, 10.0)),
        (0.0, 100.0, 0.1, "float", (0.0, 110.0)),  # never below zero when it started there
        (7.0, 7.0, 0.1, "integer", (6.0, 8.0)),  # a constant widens by its magnitude
        (1.5, 2.5, 0.0, "float", (1.5, 2.5)),
    ],
)
def test_widen(
    low: float, high: float, margin: float, kind: str, expected: tuple[float, float]
) -> None:
    assert widen(low, high, margin, kind) == expected  # type: ignore[arg-type]


def test_a_negative_margin_is_refused() -> None:
    with pytest.raises(DataError, match="margin must be zero or more"):
        widen(0.0, 1.0, -0.1)


def test_a_widened_schema_accepts_values_just_outside_the_training_range() -> None:
    frame = pd.DataFrame({"x": np.linspace(0.0, 1.0, 50), "y": ["a", "b"] * 25})
    batch = pd.DataFrame({"x": [1.05, -0.01], "y": ["a", "b"]})
    tight = validate_table(batch, infer_schema(frame, label="y"))[2]
    loose = validate_table(batch, infer_schema(frame, label="y", margin=0.1))[2]
    assert tight.rows_rejected == 2  # both just outside [0, 1]
    assert [(i.rule, i.count) for i in loose.issues] == [("below min 0", 1)]  # stays >= 0


def test_schema_round_trips_what_inference_saw() -> None:
    schema = TableSchema(
        columns={"x": ColumnSchema(type="float", non_numeric_rate=0.01, non_numeric_examples=["?"])}
    )
    assert "non_numeric_examples" in schema.to_yaml()
