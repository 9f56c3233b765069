"""Schema inference over batches gives the schema of the whole table, whatever the batch size."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlwarden.data import SchemaInference, TableSchema, infer_schema, list_datasets, load
from mlwarden.errors import DataError


def _batched(frame: pd.DataFrame, size: int, label: str | None = None, margin: float = 0.0):
    inference = SchemaInference(label, margin=margin)
    for start in range(0, len(frame), size):
        inference.update(frame.iloc[start : start + size])
    return inference.result()


def _same_as_whole(frame: pd.DataFrame, sizes=(1, 7, 1000), **kwargs) -> TableSchema:
    whole = infer_schema(frame, **kwargs)
    for size in sizes:
        assert _batched(frame, size, **kwargs) == whole, f"batches of {size}"
    return whole


@pytest.fixture(scope="module", params=list_datasets())
def dataset(request: pytest.FixtureRequest):
    return load(request.param)


@pytest.mark.parametrize(("size", "rows"), [(1, 60), (7, 700), (1000, None)])
def test_every_bundled_dataset_in_batches_gets_the_whole_tables_schema(
    dataset, size: int, rows: int | None
) -> None:
    frame = dataset.frame if rows is None else dataset.frame.iloc[:rows]
    whole = infer_schema(frame, label=dataset.label)
    assert _batched(frame, size, label=dataset.label) == whole


def test_a_bundled_dataset_with_a_margin_in_batches(dataset) -> None:
    frame = dataset.frame.iloc[:5000]
    wide = infer_schema(frame, label=dataset.label, margin=0.2)
    assert _batched(frame, 999, label=dataset.label, margin=0.2) == wide
    assert wide != infer_schema(frame, label=dataset.label)


def test_a_late_non_number_in_a_numeric_text_column_is_recorded_in_order() -> None:
    values = [str(i) for i in range(200)]
    for row, typo in zip([120, 150, 160, 170, 180, 190, 199], "bab?cde", strict=True):
        values[row] = typo
    schema = _same_as_whole(pd.DataFrame({"x": values}))
    column = schema.columns["x"]
    assert column.type == "integer" and column.non_numeric_rate == round(7 / 200, 6)
    assert column.non_numeric_examples == ["b", "a", "?", "c", "d"]


def test_numbers_that_turn_to_text_late_make_a_category_column() -> None:
    frame = pd.DataFrame({"x": ["1", "2"] * 40 + ["low", "high"] * 10})
    column = _same_as_whole(frame).columns["x"]
    assert column.type == "category" and column.categories == ["1", "2", "high", "low"]
    assert column.frequencies == {"1": 0.4, "2": 0.4, "high": 0.1, "low": 0.1}


@pytest.mark.parametrize(("distinct", "kind"), [(50, "category"), (51, "string")])
def test_the_51st_category_arriving_last_makes_a_string_column(distinct: int, kind: str) -> None:
    values = [f"v{i % 49}" for i in range(300 + 49 - distinct)]
    values += [f"w{i}" for i in range(distinct - 49)]
    column = _same_as_whole(pd.DataFrame({"c": values})).columns["c"]
    assert column.type == kind
    if kind == "category":
        assert column.frequencies is not None and column.frequencies["w0"] == round(1 / 300, 6)


@pytest.mark.parametrize("repeat", [False, True])
def test_a_duplicate_in_the_last_batch_ends_uniqueness(repeat: bool) -> None:
    ids = list(range(200))
    names = [f"user{i}" for i in range(200)]
    if repeat:
        ids[-1], names[-1] = 0, "user0"
    schema = _same_as_whole(pd.DataFrame({"id": ids, "name": names}))
    assert schema.columns["id"].unique is not repeat
    assert schema.columns["name"].type == "string" and schema.columns["name"].unique is not repeat


def test_uniqueness_compares_numbers_as_pandas_does() -> None:
    big = 2**62
    frame = pd.DataFrame(
        {
            "big": np.array([big + i for i in range(20)], dtype=np.int64),  # beyond float's 2**53
            "zero": [float(i) for i in range(19)] + [-0.0],  # -0.0 repeats 0.0
            "text": [str(i) for i in range(19)] + ["0.0"],  # the same number written twice
            # a batch holding inf is keyed apart from the others; 0.0 and 3.0 still repeat
            "inf": [float(i) for i in range(18)] + [np.inf, -0.0],
            "three": [float(i) for i in range(18)] + [np.inf, 3.0],
        }
    )
    schema = _same_as_whole(frame)
    assert schema.columns["big"].unique and not schema.columns["zero"].unique
    assert not schema.columns["text"].unique and not schema.columns["inf"].unique
    assert not schema.columns["three"].unique
    assert schema.columns["inf"].type == "integer"  # inf is integral, as pandas rounds it


def test_a_column_missing_only_in_a_later_batch() -> None:
    frame = pd.DataFrame(
        {
            "n": [float(i) for i in range(99)] + [None],
            "s": [f"s{i}" for i in range(99)] + [None],
            "c": ["a", "b"] * 49 + ["a", None],
        }
    )
    schema = _same_as_whole(frame)
    assert all(c.nullable and c.missing_rate == 0.01 for c in schema.columns.values())
    assert schema.columns["n"].type == "integer" and not schema.columns["n"].unique


def test_an_int_batch_then_a_float_batch_with_gaps_is_typed_like_their_concatenation() -> None:
    first = pd.DataFrame({"x": np.arange(10)})
    second = pd.DataFrame({"x": [10.0, None, 12.0]}, index=range(10, 13))
    inference = SchemaInference()
    inference.update(first)
    inference.update(second)
    assert inference.result() == infer_schema(pd.concat([first, second]))
    assert inference.result().columns["x"].type == "integer"


def test_integral_floats_are_integers_until_a_fraction_arrives() -> None:
    whole = [float(i) for i in range(100)]
    assert _same_as_whole(pd.DataFrame({"x": whole})).columns["x"].type == "integer"
    late_fraction = _same_as_whole(pd.DataFrame({"x": [*whole[:-1], 99.5]})).columns["x"]
    assert late_fraction.type == "float" and late_fraction.max == 99.5


def test_bool_and_all_missing_columns() -> None:
    frame = pd.DataFrame(
        {
            "flag": [True, False] * 10,
            "empty_number": [np.nan] * 20,
            "empty_text": pd.Series([None] * 20, dtype=object),
        }
    )
    schema = _same_as_whole(frame)
    assert schema.columns["flag"].type == "boolean"
    assert schema.columns["empty_number"].type == "category"
    assert schema.columns["empty_text"].missing_rate == 1.0


def test_margin_widens_features_not_the_label_in_batches() -> None:
    frame = pd.DataFrame({"x": [10.0, 20.0, 30.0] * 5, "y": [0, 1, 1] * 5})
    schema = _same_as_whole(frame, label="y", margin=0.1)
    assert (schema.columns["x"].min, schema.columns["x"].max) == (8.0, 32.0)
    assert (schema.columns["y"].min, schema.columns["y"].max) == (0.0, 1.0)


_CELLS = st.one_of(
    st.none(),
    st.sampled_from(["1", "2", " 3 ", "4.5", "-0", "x", "y", "?"]),
    st.integers(0, 60).map(lambda i: f"v{i}"),
)


@settings(max_examples=60, deadline=None)
@given(
    cells=st.lists(_CELLS, min_size=1, max_size=120),
    numbers=st.lists(st.integers(-5, 300), min_size=1, max_size=120),
    cuts=st.lists(st.integers(1, 119), max_size=8),
)
def test_any_split_of_any_table_gets_the_whole_tables_schema(
    cells: list[str | None], numbers: list[int], cuts: list[int]
) -> None:
    rows = min(len(cells), len(numbers))
    frame = pd.DataFrame(
        {"t": pd.Series(cells[:rows], dtype=object), "n": numbers[:rows], "f": numbers[:rows]}
    )
    frame["f"] = frame["f"] / 2
    bounds = sorted({0, rows, *(c for c in cuts if c < rows)})
    inference = SchemaInference(margin=0.05)
    for start, stop in itertools.pairwise(bounds):
        inference.update(frame.iloc[start:stop])
    assert inference.result() == infer_schema(frame, margin=0.05)


def test_a_label_that_is_not_a_column_is_the_same_error_as_infer_schema() -> None:
    frame = pd.DataFrame({"a": [1, 2]})
    with pytest.raises(DataError) as whole:
        infer_schema(frame, label="y")
    with pytest.raises(DataError) as batched:
        SchemaInference("y").update(frame)
    assert (
        str(batched.value)
        == str(whole.value)
        == ("label column 'y' is not in the table; columns are ['a']")
    )


def test_bad_batches_are_refused_with_what_was_expected() -> None:
    inference = SchemaInference()
    with pytest.raises(DataError, match=r"call update\(\) with a batch first"):
        inference.result()
    inference.update(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    with pytest.raises(DataError, match=r"batch columns \['b', 'a'\] differ from the first"):
        inference.update(pd.DataFrame({"b": ["z"], "a": [3]}))
    with pytest.raises(DataError, match=r"column 'a' is \w+ in this batch but numeric in earlier"):
        inference.update(pd.DataFrame({"a": ["3"], "b": [4]}))
    # the refused batches left nothing behind
    assert inference.result() == infer_schema(pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    with pytest.raises(DataError, match="column names repeat"):
        SchemaInference().update(pd.DataFrame([[1, 2]], columns=["a", "a"]))
    with pytest.raises(DataError, match=r"margin must be zero or more, got -0\.1"):
        SchemaInference(margin=-0.1)
