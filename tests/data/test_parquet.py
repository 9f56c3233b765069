"""Tables read and written in parts: the same rows as the whole-table operations they replace."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from mlwarden import data
from mlwarden.data import _parquet, parquet_batches, table_rows, write_rows
from mlwarden.pipeline._context import StepContext
from mlwarden.pipeline._data_steps import split
from mlwarden.pipeline._io import json_bytes, read_json, table_bytes


@pytest.fixture(scope="module")
def adult(tmp_path_factory) -> tuple[pd.DataFrame, object]:
    frame = data.load("adult").frame
    path = tmp_path_factory.mktemp("tables") / "adult.parquet"
    path.write_bytes(table_bytes(frame))
    return frame, path


def test_batches_put_together_are_the_table(adult):
    frame, path = adult
    parts = list(parquet_batches(path, rows=5_000))
    assert len(parts) == 10 and table_rows(path) == len(frame)
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), frame)


@pytest.mark.parametrize("bucket", [1_000_000, 7_000])
def test_rows_written_in_a_shuffled_order_equal_iloc(adult, bucket, tmp_path, monkeypatch):
    frame, path = adult
    monkeypatch.setattr(_parquet, "_BUCKET_ROWS", bucket)  # several buckets, as at scale
    positions = np.random.default_rng(0).permutation(len(frame))[:30_000]
    write_rows(path, positions, tmp_path / "out.parquet", tmp_path)
    written = pd.read_parquet(tmp_path / "out.parquet")
    pd.testing.assert_frame_equal(written, frame.iloc[positions].reset_index(drop=True))
    assert not list(tmp_path.glob("bucket-*"))  # the buckets are gone


def _split_step(path, params: dict, tmp_path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    inputs = {"info": json_bytes({"label": "income"})}
    ctx = StepContext(
        step="split",
        params=params,
        run={},
        _read=inputs.__getitem__,
        _path=lambda role: path,
    )
    out = split(ctx)
    result = (
        pd.read_parquet(out["train"].data),
        pd.read_parquet(out["test"].data),
        read_json(out["sample"].data),
    )
    ctx.close()
    return result


def test_split_equals_train_test_split_of_the_whole_table(adult, tmp_path):
    frame, path = adult
    train, test, sample = _split_step(path, {"test_size": 0.25, "seed": 7}, tmp_path)
    want_train, want_test = train_test_split(
        frame, test_size=0.25, random_state=7, stratify=frame["income"]
    )
    pd.testing.assert_frame_equal(train, want_train.reset_index(drop=True))
    pd.testing.assert_frame_equal(test, want_test.reset_index(drop=True))
    assert sample == {"train_rows": len(train), "used": len(train), "max_rows": None, "how": "all"}


def test_max_rows_trains_on_a_stratified_sample_and_says_so(adult, tmp_path):
    frame, path = adult
    params = {"test_size": 0.25, "seed": 7, "max_rows": 5_000}
    train, test, sample = _split_step(path, params, tmp_path)
    assert len(train) == 5_000 and len(test) == math.ceil(0.25 * len(frame))  # as sklearn
    assert sample["train_rows"] == len(frame) - len(test) and sample["used"] == 5_000
    assert sample["how"].startswith("stratified")
    share = (train["income"] == ">50K").mean()
    assert abs(share - (frame["income"] == ">50K").mean()) < 0.01
    whole = frame.drop_duplicates()
    assert len(train.merge(whole, how="inner")) >= 5_000 - 50  # real rows of the table
