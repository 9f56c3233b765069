"""Ingest and validate read tables in batches, with the results of one whole-table read."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlwarden import data
from mlwarden.data import (
    TableSchema,
    decide_classes,
    infer_schema,
    read_csv_table,
    validate_table,
)
from mlwarden.pipeline import _data_steps
from mlwarden.pipeline._context import StepContext
from mlwarden.pipeline._io import read_json


def _ingest(csv: Path, label: str, positive: object = None) -> tuple[pd.DataFrame, dict, dict]:
    ctx = StepContext(
        step="ingest",
        params={
            "dataset": None,
            "path": csv.name,
            "label": label,
            "positive": positive,
            "has_schema": False,
            "has_feedback": False,
            "sep": None,
            "classes": None,
        },
        run={},
        _read=lambda role: b"",
        _path=lambda role: csv,
    )
    out = _data_steps.ingest(ctx)
    raw = pd.read_parquet(out["raw"].data)
    schema, info = read_json(out["schema"].data), read_json(out["info"].data)
    ctx.close()
    return raw, schema, info


def _validate(raw: pd.DataFrame, schema: dict, info: dict, tmp_path: Path):
    from mlwarden.pipeline._io import json_bytes, table_bytes

    path = tmp_path / "raw.parquet"
    path.write_bytes(table_bytes(raw))
    inputs = {"schema": json_bytes(schema), "info": json_bytes(info)}
    ctx = StepContext(
        step="validate",
        params={
            "max_rejected_fraction": 1.0,
            "missing": {},
            "protected": [],
            "drift": None,
            "duplicates": "report",
        },
        run={},
        _read=inputs.__getitem__,
        _path=lambda role: path,
    )
    out = _data_steps.validate(ctx)
    result = (
        pd.read_parquet(out["clean"].data),
        pd.read_csv(out["rejected"].data),
        read_json(out["report"].data),
    )
    ctx.close()
    return result


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    """Batches of 997 rows, so the bundled tables span many."""
    monkeypatch.setattr(_data_steps, "BATCH_ROWS", 997)


@pytest.mark.parametrize("name", ["adult", "german", "phishing"])
def test_ingest_and_validate_in_batches_match_one_whole_read(name, tmp_path):
    dataset = data.load(name)
    csv = tmp_path / f"{name}.csv"
    dataset.frame.to_csv(csv, index=False)
    raw, schema, info = _ingest(csv, dataset.label, dataset.positive)
    whole = read_csv_table(csv.read_bytes(), csv.name)
    pd.testing.assert_frame_equal(raw, whole)
    expected_schema = infer_schema(whole, label=dataset.label)
    got = TableSchema.model_validate(schema)
    assert got.columns.keys() == expected_schema.columns.keys()
    for column, inferred in expected_schema.columns.items():
        if column != dataset.label:
            assert got.columns[column] == inferred, column
    classes = decide_classes(whole[dataset.label], dataset.positive)
    assert info["classes"] == classes.classes and info["rows"] == len(whole)
    clean, rejected, report = _validate(raw, schema, info, tmp_path)
    accepted, quarantined, expected = validate_table(
        whole, got, row_ids=True, label_classes=info["classes"]
    )
    pd.testing.assert_frame_equal(clean, accepted)
    assert len(rejected) == len(quarantined) and report == expected.model_dump(mode="json")


def test_a_typo_deep_in_a_numeric_column_is_quarantined_not_a_crash(tmp_path):
    frame = data.load("phishing").frame
    big = pd.concat([frame] * 3, ignore_index=True).astype({"port": object})
    big.loc[len(big) - 5, "port"] = "1O"  # letter O, 33,160 rows in
    csv = tmp_path / "typo.csv"
    big.to_csv(csv, index=False)
    raw, schema, info = _ingest(csv, "Result", "phishing")
    assert pd.api.types.is_string_dtype(raw["port"])  # text for the whole file, as pandas has it
    assert TableSchema.model_validate(schema).columns["port"].type == "integer"
    _, rejected, report = _validate(raw, schema, info, tmp_path)
    assert rejected["_row"].tolist() == [len(big) - 5]
    assert "port: not a number" in rejected["_reasons"].iloc[0]
    assert report["rows_rejected"] == 1
