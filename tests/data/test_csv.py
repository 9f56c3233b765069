"""Streaming a CSV in batches gives, row for row and type for type, the table read whole."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlwarden.data import csv_batches, list_datasets, load, read_csv_table
from mlwarden.errors import DataError


def _streamed(path: Path, rows: int, sep: str | None = None) -> pd.DataFrame:
    return pd.concat(list(csv_batches(path, path.name, sep, rows=rows)))


def _assert_parity(path: Path, rows: int, sep: str | None = None) -> pd.DataFrame:
    whole = read_csv_table(path.read_bytes(), path.name, sep)
    pd.testing.assert_frame_equal(_streamed(path, rows, sep), whole)
    return whole


@pytest.mark.parametrize("sep", [",", ";", "\t"])
@pytest.mark.parametrize("name", list_datasets())
def test_every_bundled_dataset_streams_to_the_whole_file_table(
    tmp_path: Path, name: str, sep: str
) -> None:
    path = tmp_path / f"{name}.csv"
    load(name).frame.to_csv(path, sep=sep, index=False)
    whole = _assert_parity(path, rows=4_000)
    assert len(whole) == len(load(name).frame)


CRAFTED = {
    "late typo in an int column": ("n,k\n1,a\n2,b\n3,c\n4,d\nfive,e\n", {"n": "str"}),
    "ints then a float": ("n,k\n1,a\n2,b\n3,c\n4.5,d\n", {"n": "float64"}),
    "ints then a missing value": ("n,k\n1,a\n2,b\n3,c\n,d\n", {"n": "float64"}),
    "True/False then missing": ("b,k\nTrue,a\nFalse,b\ntrue,c\n,d\n", {"b": "object"}),
    "True/False then 1": ("b,k\nTrue,a\nFalse,b\nTrue,c\n1,d\n", {"b": "str"}),
    "True/False throughout": ("b,k\nTrue,a\nFALSE,b\ntrue,c\nFalse,d\n", {"b": "bool"}),
    "all missing in the first batch": ("m,k\n,a\nNA,b\n,c\n7,d\n", {"m": "float64"}),
    "missing then True": ("m,k\n,a\n,b\n,c\nTrue,d\n", {"m": "object"}),
    "missing then text": ("m,k\n,a\n,b\nn/a,c\nx,d\n", {"m": "str"}),
    "all missing": ("m,k\n,a\n,b\n,c\n,d\n", {"m": "float64"}),
    "quoted separators and newlines": (
        'q,k\n"a,b",1\n"line\nbreak",2\n"say ""hi""",3\nplain,4\n',
        {"q": "str", "k": "int64"},
    ),
    "numbers with leading zeros in a text column": (
        "z,k\n007,a\n8,b\n9,c\nx9,d\n",
        {"z": "str"},
    ),
    "negative and exponent numbers": ("f,k\n-1,a\n2e3,b\n-1.5E-2,c\n3,d\n", {"f": "float64"}),
    "trailing empty lines": ("n,k\n1,a\n2,b\n3,c\n4,d\n\n\n\n", {"n": "int64"}),
    "an unsigned int past int64": (
        "u,k\n1,a\n2,b\n3,c\n18446744073709551615,d\n",
        {"u": "uint64"},
    ),
    "a negative int, then one past int64": (
        "u,k\n-1,a\n2,b\n3,c\n18446744073709551615,d\n",
        {"u": "str"},
    ),
    "a missing value, then an int past int64": (
        "u,k\n,a\nNA,b\n3,c\n9223372036854775808,d\n",
        {"u": "str"},
    ),
}


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_files_stream_to_the_whole_file_types(tmp_path: Path, case: str, rows: int) -> None:
    text, expected = CRAFTED[case]
    path = tmp_path / "t.csv"
    path.write_text(text)
    whole = _assert_parity(path, rows)
    assert {column: str(whole[column].dtype) for column in expected} == expected


def test_text_columns_keep_the_numbers_exactly_as_written(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("z,k\n007,1\n1.50,2\n-0,3\n1e3,4\nabc,5\n")
    assert _streamed(path, rows=2)["z"].tolist() == ["007", "1.50", "-0", "1e3", "abc"]


def test_an_int_past_int64_after_a_missing_value_keeps_the_missing_text(tmp_path: Path) -> None:
    # pandas leaves such a column as written, 'NA' included, where other columns read it missing
    path = tmp_path / "t.csv"
    path.write_text("u,k\nNA,NA\n9223372036854775808,1\n")
    frame = _assert_parity(path, rows=1)
    assert frame["u"].tolist() == ["NA", "9223372036854775808"]
    assert frame["k"].isna().tolist() == [True, False]


def test_batches_have_the_asked_size_and_a_continuing_index(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n" + "".join(f"{i},{i % 3}\n" for i in range(10)))
    batches = list(csv_batches(path, "t.csv", rows=4))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [list(b.index) for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all(isinstance(b.index, pd.RangeIndex) for b in batches)


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_the_separator_is_detected_from_the_head_of_the_file(tmp_path: Path, sep: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text("\n".join(sep.join(row) for row in [["a", "b"], *[["1", "x"]] * 20_000]))
    assert path.stat().st_size > 64 * 1024
    batch = next(csv_batches(path, "t.csv", rows=10_000))
    assert list(batch.columns) == ["a", "b"] and batch.shape == (10_000, 2)


def test_a_given_separator_wins(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a;b\n1;2\n")
    assert list(_assert_parity(path, rows=1, sep=",").columns) == ["a;b"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"t\.csv is empty"),
        (b"a,b,y\n", r"t\.csv has a header \(3 columns\) but 0 data rows"),
        (b"a,b\n1,2\n3,4\n\xff\xfe,6\n", r"t\.csv is not a readable CSV table: 'utf-8' codec"),
        (b"a,b\n1,2\n3,4\n5,6,7\n", r"t\.csv is not a readable CSV table: .*Expected 2 fields"),
    ],
)
def test_bad_files_raise_the_same_error_as_a_whole_read(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as whole:
        read_csv_table(content, "t.csv")
    with pytest.raises(DataError, match=message) as streamed:
        next(csv_batches(path, "t.csv", rows=1))
    assert str(streamed.value) == str(whole.value)


def test_a_batch_size_below_one_row_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a\n1\n")
    with pytest.raises(DataError, match=r"rows=0 for t\.csv: expected a batch size of at least 1"):
        next(csv_batches(path, "t.csv", rows=0))


TOKENS = ["1", "-2", "007", "1.5", "-3e2", "", "NA", "True", "false", "x", "inf"]
TOKENS += ["9223372036854775808", "18446744073709551615", "-18446744073709551616"]
TOKENS += ["184467440737095516150", "1e400", " 5", " 9223372036854775808", "18446744073709551615 "]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    column=st.lists(st.sampled_from(TOKENS), min_size=1, max_size=8),
    rows=st.integers(1, 4),
)
def test_any_column_of_numbers_flags_and_text_streams_to_the_whole_file_table(
    tmp_path: Path, column: list[str], rows: int
) -> None:
    path = tmp_path / "t.csv"
    path.write_text("v,k\n" + "".join(f"{value},{i}\n" for i, value in enumerate(column)))
    _assert_parity(path, rows)
