"""Validating in batches gives the whole-table answer: same accepted rows, quarantine and report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlwarden import data
from mlwarden.data import (
    DUPLICATE_REASON,
    ROW_COLUMN,
    ColumnSchema,
    MissingPolicy,
    Rule,
    TableCheck,
    TableSchema,
    find_duplicates,
    validate_batches,
    validate_table,
)


def _batches(frame: pd.DataFrame, rows: int) -> list[pd.DataFrame]:
    return [frame.iloc[i : i + rows] for i in range(0, len(frame), rows)]


def _streamed(
    frame: pd.DataFrame,
    schema: TableSchema,
    rows: int,
    tmp_path: Path,
    duplicates: str | None = None,
    **kwargs,
):
    quarantine, clean = tmp_path / "q.csv", tmp_path / "clean.parquet"
    check = TableCheck(
        schema,
        quarantine=quarantine,
        clean=clean,
        label=schema.label if duplicates else None,
        **kwargs,
    )
    for batch in _batches(frame, rows):
        check.add(batch)
    report, found = check.finish(duplicates)  # type: ignore[arg-type]
    return pd.read_parquet(clean), pd.read_csv(quarantine), report, found


def _whole(frame: pd.DataFrame, schema: TableSchema, tmp_path: Path, **kwargs):
    accepted, quarantined, report = validate_table(frame, schema, row_ids=True, **kwargs)
    quarantined.to_csv(tmp_path / "whole.csv", index=False)
    return accepted, pd.read_csv(tmp_path / "whole.csv"), report


@pytest.fixture(scope="module")
def messy() -> tuple[pd.DataFrame, TableSchema]:
    """Every kind of finding, spread so that batches see different ones."""
    rng = np.random.default_rng(3)
    n = 400
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "age": rng.integers(0, 120, n).astype(object),
            "income": rng.normal(50, 10, n),
            "kind": rng.choice(["a", "b", "c"], n).astype(object),
            "flag": rng.choice(["true", "false"], n).astype(object),
            "score": rng.integers(0, 10, n).astype(float),
            "y": rng.choice([0, 1], n),
        }
    )
    frame.loc[[5, 250, 399], "id"] = [1, 7, 390]  # repeats an earlier id, one across batches
    frame.loc[[3, 300], "age"] = ["n/a", "forty"]
    frame.loc[[10, 11], "age"] = [150, -2]
    frame.loc[[20, 390], "kind"] = ["zzz", None]
    frame.loc[[30], "flag"] = ["maybe"]
    frame.loc[[40, 41, 380], "score"] = [np.nan, 2.5, np.nan]
    frame.loc[[50, 360], "income"] = [np.nan, 10_000.0]
    frame.loc[[60, 61], "y"] = [2, 7]
    frame = pd.concat([frame, frame.iloc[[100, 200]]], ignore_index=True)  # two duplicate rows
    frame.loc[len(frame) - 2 :, "id"] = [1000, 1001]
    schema = TableSchema(
        columns={
            "id": ColumnSchema(type="integer", unique=True),
            "age": ColumnSchema(type="integer", min=0, max=130),
            "income": ColumnSchema(type="float", nullable=True),
            "kind": ColumnSchema(type="category", categories=["a", "b", "c"]),
            "flag": ColumnSchema(type="boolean"),
            "score": ColumnSchema(type="integer", nullable=True),
            "y": ColumnSchema(type="integer"),
        },
        label="y",
        rules=[Rule(name="rich", expr="income < 1000")],
    )
    return frame, schema


@pytest.mark.parametrize("rows", [1, 7, 150, 10_000])
def test_batches_give_the_whole_table_answer(messy, rows, tmp_path):
    frame, schema = messy
    kwargs = {"label_classes": [0, 1]}
    accepted, quarantined, report = _whole(frame, schema, tmp_path, **kwargs)
    clean, streamed_q, streamed_report, _ = _streamed(frame, schema, rows, tmp_path, **kwargs)
    assert report.rows_rejected > 10  # the fixture does exercise the quarantine
    pd.testing.assert_frame_equal(clean, accepted)
    pd.testing.assert_frame_equal(streamed_q, quarantined)
    assert streamed_report == report


def test_a_value_repeated_in_a_later_batch_is_a_duplicate(messy, tmp_path):
    frame, schema = messy
    _, quarantined, _, _ = _streamed(frame, schema, 100, tmp_path)
    reasons = dict(zip(quarantined[ROW_COLUMN], quarantined["_reasons"], strict=True))
    assert "id: duplicate value" in reasons[250]  # id 7 came in the first batch


@pytest.mark.parametrize("name", ["adult", "german", "phishing"])
def test_bundled_tables_in_batches(name, tmp_path):
    dataset = data.load(name)
    frame = dataset.frame
    accepted, quarantined, report = _whole(frame, dataset.schema, tmp_path)
    clean, streamed_q, streamed_report, _ = _streamed(frame, dataset.schema, 997, tmp_path)
    pd.testing.assert_frame_equal(clean, accepted)
    pd.testing.assert_frame_equal(streamed_q, quarantined)
    assert streamed_report == report


def test_missing_policies_and_failures_add_up(messy, tmp_path):
    frame, schema = messy
    policies = {"income": MissingPolicy(action="fail"), "score": MissingPolicy(action="drop")}
    report = validate_table(frame, schema, policies)[2]
    streamed = validate_batches(
        _batches(frame, 33), schema, policies, quarantine=tmp_path / "q.csv"
    )
    assert streamed == report
    assert streamed.missing_failures == {"income": 1}


def test_an_integer_column_whose_missing_rows_were_all_rejected_stays_integer(tmp_path):
    frame = pd.DataFrame({"n": [1.0, np.nan, 3.0, 4.0], "m": [1, -5, 2, 3]})
    schema = TableSchema(
        columns={
            "n": ColumnSchema(type="integer", nullable=True),
            "m": ColumnSchema(type="integer", min=0),
        }
    )
    frame.loc[1, "m"] = -5  # the row with the missing n is rejected for m
    clean, _, _, _ = _streamed(frame, schema, 2, tmp_path)
    assert clean["n"].dtype == "int64"
    pd.testing.assert_frame_equal(clean, _whole(frame, schema, tmp_path)[0])


@pytest.fixture(scope="module")
def without_ids(messy) -> tuple[pd.DataFrame, TableSchema]:
    """The messy table without its id column: the two copied rows are now duplicates."""
    frame, schema = messy
    columns = {n: c for n, c in schema.columns.items() if n != "id"}
    return frame.drop(columns=["id"]), schema.model_copy(update={"columns": columns})


def test_dropped_duplicates_leave_the_accepted_rows_for_the_quarantine(without_ids, tmp_path):
    frame, schema = without_ids
    clean, quarantined, report, found = _streamed(
        frame, schema, 50, tmp_path, duplicates="drop", label_classes=[0, 1]
    )
    accepted = validate_table(frame, schema, row_ids=True, label_classes=[0, 1])[0]
    expected, repeated = find_duplicates(accepted.drop(columns=[ROW_COLUMN]), "y")
    assert found is not None and found.duplicate_rows == expected.duplicate_rows == 2
    assert found.dropped == 2
    kept = accepted[~repeated].reset_index(drop=True)
    pd.testing.assert_frame_equal(clean, kept)
    dropped = quarantined[quarantined["_reasons"] == DUPLICATE_REASON]
    assert sorted(dropped[ROW_COLUMN]) == sorted(accepted[ROW_COLUMN][repeated])
    assert report.rows_accepted == len(kept) + 2  # validation accepted them; policy dropped them
    assert report.rows_in == report.rows_accepted + report.rows_rejected


def test_reported_duplicates_stay_accepted(without_ids, tmp_path):
    frame, schema = without_ids
    clean, _, report, found = _streamed(frame, schema, 50, tmp_path, duplicates="report")
    assert found is not None and found.duplicate_rows == 2 and found.dropped == 0
    assert len(clean) == report.rows_accepted
