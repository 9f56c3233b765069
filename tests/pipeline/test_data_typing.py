"""A user's own CSV through the pipeline: typing, label classes, separators, duplicates.

Each test writes a small table of its own (not a bundled one) and a spec as the README shows
(``data: {path: x.csv, label: y}``), with the default data policy unless the test is about it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlwarden.lineage import LineageStore
from mlwarden.pipeline import LocalExecutor, RunResult, parse_spec

SPEC = """\
name: t
data: {{path: {path}, label: y{data}}}
split: {{test_size: 0.25, seed: 0}}
train: {{estimator: logistic_regression, params: {{max_iter: 500}}, cv: 3, n_jobs: 1}}
checks:
  - {{check: performance_floor, metric: accuracy, min: 0.5}}
register: {{name: t}}
"""


def _table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(50, 10, n).round(2)
    y = np.where(x1 + rng.normal(0, 5, n) > 50, "phishing", "legitimate")
    return pd.DataFrame(
        {"x1": x1, "x2": rng.integers(0, 100, n), "c": rng.choice(["a", "b"], n), "y": y}
    )


def _run(
    store: LineageStore, tmp_path: Path, frame: pd.DataFrame, data: str = "", sep: str = ","
) -> RunResult:
    path = tmp_path / "x.csv"
    frame.to_csv(path, index=False, sep=sep)
    spec = parse_spec(SPEC.format(path=path, data=data))
    return LocalExecutor(store).run(spec)


def _json(store: LineageStore, result: RunResult, ref: str) -> dict:  # type: ignore[type-arg]
    return json.loads(store.read_artifact(result.artifacts[ref]))  # type: ignore[no-any-return]


def _quarantine(store: LineageStore, result: RunResult) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(store.read_artifact(result.artifacts["validate.rejected"])))


def _typos(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype({"x1": object})
    frame.loc[[3, 200, 300], "x1"] = ["unknown", "12,5", "--"]
    return frame


def test_a_number_column_with_three_typos_stays_numeric_and_quarantines_them(
    tmp_path: Path, store: LineageStore
) -> None:
    result = _run(store, tmp_path, _typos(_table()))
    assert result.status == "failed" and result.exit_code == 3  # default: nothing left out
    assert "x1 not a number (3)" in (result.error or "")
    assert "data.max_rejected_fraction" in (result.error or "")
    quarantine = _quarantine(store, result)
    assert sorted(quarantine["_row"]) == [3, 200, 300]
    assert set(quarantine["_reasons"]) == {"x1: not a number"}
    allowed = _run(store, tmp_path, _typos(_table()), ", max_rejected_fraction: 0.01")
    assert allowed.status == "completed", allowed.error
    schema = _json(store, allowed, "ingest.schema")
    assert schema["columns"]["x1"]["type"] == "float"
    train = pd.read_parquet(io.BytesIO(store.read_artifact(allowed.artifacts["split.train"])))
    assert train["x1"].dtype == np.float64


def test_stray_and_missing_labels_are_quarantined_before_training(
    tmp_path: Path, store: LineageStore
) -> None:
    frame = _table().astype({"y": object})
    frame.loc[7, "y"] = "phishng"
    frame.loc[9, "y"] = None
    result = _run(store, tmp_path, frame, ", positive: phishing, max_rejected_fraction: 0.01")
    assert result.status == "completed", result.error
    reasons = dict(zip(*_quarantine(store, result)[["_row", "_reasons"]].T.values, strict=True))
    expected = "expected one of ['legitimate', 'phishing']"
    assert reasons == {
        7: f"y: label 'phishng' is not a class; {expected}",
        9: f"y: missing label; {expected}",
    }
    info = _json(store, result, "ingest.info")
    assert info["n_classes"] == 2 and info["label_classes"]["stray"] == {"phishng": 1}
    assert _json(store, result, "ingest.schema")["columns"]["y"]["categories"] == [
        "legitimate",
        "phishing",
    ]


def test_a_stray_label_fails_the_default_policy_with_the_reason(
    tmp_path: Path, store: LineageStore
) -> None:
    frame = _table().astype({"y": object})
    frame.loc[7, "y"] = "phishng"
    result = _run(store, tmp_path, frame, ", positive: phishing")
    assert result.status == "failed" and result.exit_code == 3
    assert "y label 'phishng' is not a class" in (result.error or "")


def test_data_classes_lists_the_classes(tmp_path: Path, store: LineageStore) -> None:
    frame = _table().astype({"y": object})
    frame.loc[:39, "y"] = "unsure"  # 10%: frequent enough to pass for a class
    result = _run(
        store, tmp_path, frame, ", classes: [legitimate, phishing], max_rejected_fraction: 0.2"
    )
    assert result.status == "completed", result.error
    assert _json(store, result, "ingest.info")["label_classes"]["rule"] == "data.classes"
    assert len(_quarantine(store, result)) == 40


@pytest.mark.parametrize("positive", ["1", "'1'"])
def test_positive_one_or_text_one_match_a_numeric_label(
    tmp_path: Path, store: LineageStore, positive: str
) -> None:
    frame = _table()
    frame["y"] = (frame["y"] == "phishing").astype(int)
    result = _run(store, tmp_path, frame, f", positive: {positive}")
    assert result.status == "completed", result.error
    metrics = _json(store, result, "evaluate.metrics")
    assert metrics["positive"] == 1 and metrics["classes"] == [0, 1]


def test_a_header_only_csv_says_zero_data_rows(tmp_path: Path, store: LineageStore) -> None:
    result = _run(store, tmp_path, _table().iloc[0:0])
    assert result.status == "failed" and result.exit_code == 3
    assert "has a header (4 columns) but 0 data rows" in (result.error or "")


@pytest.mark.parametrize("data", ["", ", sep: ';'"])
def test_a_semicolon_separated_file_is_read(tmp_path: Path, store: LineageStore, data: str) -> None:
    result = _run(store, tmp_path, _table(), data, sep=";")
    assert result.status == "completed", result.error
    assert _json(store, result, "ingest.info")["columns"] == ["x1", "x2", "c", "y"]


def test_a_three_class_label_has_its_class_count_in_info_and_quality(
    tmp_path: Path, store: LineageStore
) -> None:
    frame = _table()
    frame["y"] = np.array(["a", "b", "c"])[np.digitize(frame["x1"], [45.0, 55.0])]
    result = _run(store, tmp_path, frame)
    assert result.status == "completed", result.error
    assert _json(store, result, "ingest.info")["n_classes"] == 3
    assert _json(store, result, "validate.quality")["label_classes"]["classes"] == ["a", "b", "c"]
    wrong = _run(store, tmp_path, frame, ", positive: phishing")
    assert "positive class 'phishing' is not a class of label column 'y'; its classes are " in (
        wrong.error or ""
    )


def _doubled() -> pd.DataFrame:
    half = _table(300)
    return pd.concat([half, half]).sample(frac=1, random_state=0).reset_index(drop=True)


def test_duplicates_and_test_rows_seen_in_training_are_reported(
    tmp_path: Path, store: LineageStore
) -> None:
    result = _run(store, tmp_path, _doubled())
    assert result.status == "completed", result.error
    duplicates = _json(store, result, "validate.quality")["duplicates"]
    assert (duplicates["rows"], duplicates["duplicate_rows"]) == (600, 300)
    assert duplicates["duplicate_share"] == 0.5 and duplicates["policy"] == "report"
    metrics = _json(store, result, "evaluate.metrics")
    overlap, unseen = metrics["overlap"], metrics["deduplicated"]
    assert overlap["test_rows"] == 150 == overlap["seen_in_training"] + overlap["unseen_rows"]
    assert overlap["seen_share"] > 0.5  # most test rows are copies of training rows
    assert unseen["n"] == overlap["unseen_rows"] and 0.0 <= unseen["f1"] <= 1.0


def test_duplicates_drop_takes_them_out_and_keeps_them_in_the_quarantine(
    tmp_path: Path, store: LineageStore
) -> None:
    result = _run(store, tmp_path, _doubled(), ", duplicates: drop")
    assert result.status == "completed", result.error
    duplicates = _json(store, result, "validate.quality")["duplicates"]
    assert duplicates["dropped"] == 300 == duplicates["duplicate_rows"]
    quarantine = _quarantine(store, result)
    assert len(quarantine) == 300
    assert set(quarantine["_reasons"]) == {"duplicate of an earlier accepted row (policy: drop)"}
    assert _json(store, result, "validate.report")["rows_rejected"] == 0  # not bad rows
    assert _json(store, result, "evaluate.metrics")["overlap"]["seen_in_training"] == 0


def test_drift_with_bad_rows_keeps_the_quarantine(tmp_path: Path, store: LineageStore) -> None:
    reference = tmp_path / "reference.csv"
    _table(seed=5).to_csv(reference, index=False)
    data = f", max_rejected_fraction: 0.01, drift: {{reference: {reference}, action: report}}"
    result = _run(store, tmp_path, _typos(_table()), data)
    assert result.status == "completed", result.error
    drift = _json(store, result, "validate.quality")["drift"]
    assert not drift["drifted"] and len(_quarantine(store, result)) == 3


def test_a_numeric_label_with_a_stray_text_value_keeps_positive_one(
    tmp_path: Path, store: LineageStore
) -> None:
    frame = _table()
    frame["y"] = (frame["y"] == "phishing").astype(int).astype(object)
    frame.loc[5, "y"] = "x"  # read as text; the schema still types the label integer
    result = _run(store, tmp_path, frame, ", positive: 1, max_rejected_fraction: 0.01")
    assert result.status == "completed", result.error
    metrics = _json(store, result, "evaluate.metrics")
    assert metrics["positive"] == 1 and metrics["classes"] == [0, 1]


def test_a_label_of_numbers_declared_as_categories_keeps_its_positive(
    tmp_path: Path, store: LineageStore
) -> None:
    frame = _table()
    frame["y"] = (frame["y"] == "phishing").astype(int)
    schema = {
        "columns": {
            "x1": {"type": "float"},
            "x2": {"type": "integer"},
            "c": {"type": "category", "categories": ["a", "b"]},
            "y": {"type": "category", "categories": [0, 1]},
        },
        "label": "y",
    }
    result = _run(store, tmp_path, frame, f", positive: 1, schema: {json.dumps(schema)}")
    assert result.status == "completed", result.error
    assert _json(store, result, "evaluate.metrics")["positive"] == "1"  # as the model sees it
