"""The data policy in a pipeline: missing values, quarantine, drift, bias, label errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlwarden import datasets
from mlwarden.data._label_errors import flip_labels, precision_recall
from mlwarden.lineage import LineageStore, verify_store
from mlwarden.models import ModelRegistry
from mlwarden.pipeline import LocalExecutor, RunResult, parse_spec
from mlwarden.pipeline._quarantine import rows_kept_out

SPEC = """\
name: credit
data:
  path: {path}
  label: credit
  positive: bad
{policy}
split: {{test_size: 0.3, seed: 3}}
train:
  estimator: logistic_regression
  params: {{max_iter: 1000}}
  cv: 3
  n_jobs: 1
checks:
  - {{check: performance_floor, metric: roc_auc, min: 0.6}}
register: {{name: credit}}
"""


def _german_csv(tmp_path: Path, edit: object = None) -> Path:
    frame = datasets.load("german").frame.copy()
    if callable(edit):
        edit(frame)
    path = tmp_path / "credit.csv"
    frame.to_csv(path, index=False)
    return path


def _run(store: LineageStore, path: Path, policy: str) -> RunResult:
    return LocalExecutor(store).run(parse_spec(SPEC.format(path=path, policy=policy)))


def _json(store: LineageStore, result: RunResult, ref: str) -> object:
    return json.loads(store.read_artifact(result.artifacts[ref]))


def _csv(store: LineageStore, result: RunResult, ref: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(store.read_artifact(result.artifacts[ref])))


def _blank(column: str, rows: list[int]) -> object:
    def edit(frame: pd.DataFrame) -> None:
        frame.loc[rows, column] = np.nan

    return edit


BLANKS = list(range(0, 1000, 10))  # 100 rows


def test_impute_fits_on_training_rows_and_fills_both_splits(
    tmp_path: Path, store: LineageStore
) -> None:
    path = _german_csv(tmp_path, _blank("duration_months", BLANKS))
    policy = "  missing:\n    duration_months: {action: impute, strategy: median}"
    result = _run(store, path, policy)
    assert result.status == "completed", result.error
    assert [s.step for s in result.steps][:4] == ["ingest", "validate", "split", "impute"]
    imputation = _json(store, result, "impute.imputation")
    (column,) = imputation["columns"]  # type: ignore[index]
    train = pd.read_parquet(io.BytesIO(store.read_artifact(result.artifacts["split.train"])))
    assert column["value"] == train["duration_months"].median()  # training rows only
    assert column["fitted_on_rows"] == train["duration_months"].notna().sum()
    test = pd.read_parquet(io.BytesIO(store.read_artifact(result.artifacts["impute.test"])))
    assert test["duration_months"].notna().all()
    manifest = ModelRegistry(store).get("credit@1").manifest
    assert manifest.artifacts["imputation"] == result.artifacts["impute.imputation"]


def test_drop_quarantines_rows_and_the_model_lineage_names_them(
    tmp_path: Path, store: LineageStore
) -> None:
    path = _german_csv(tmp_path, _blank("purpose", BLANKS))
    policy = "  max_rejected_fraction: 0.2\n  missing:\n    purpose: {action: drop}"
    result = _run(store, path, policy)
    assert result.status == "completed", result.error
    report = _json(store, result, "validate.report")
    assert report["rows_in"] == 1000 == report["rows_accepted"] + report["rows_rejected"]  # type: ignore[index]
    quarantine = _csv(store, result, "validate.rejected")
    assert sorted(quarantine["_row"]) == BLANKS
    assert set(quarantine["_reasons"]) == {"purpose: missing value (policy: drop)"}
    manifest = ModelRegistry(store).get("credit@1").manifest
    (kept_out,) = rows_kept_out(store, manifest.artifacts)
    assert kept_out.step == "validate" and kept_out.rows == BLANKS
    assert kept_out.reasons == {"purpose: missing value (policy: drop)": 100}


def test_fail_stops_the_run_and_keeps_the_quarantine(tmp_path: Path, store: LineageStore) -> None:
    path = _german_csv(tmp_path, _blank("purpose", [5]))
    result = _run(store, path, "  missing:\n    purpose: {action: fail}")
    assert result.status == "failed" and result.exit_code == 3
    assert "missing values where the policy says fail: {'purpose': 1}" in (result.error or "")
    assert "validate.rejected" in result.artifacts
    assert verify_store(store).ok


def test_too_many_quarantined_rows_fail_the_batch(tmp_path: Path, store: LineageStore) -> None:
    def out_of_range(frame: pd.DataFrame) -> None:
        frame.loc[:59, "age"] = 300

    schema = tmp_path / "schema.yaml"
    declared = datasets.load("german").schema
    schema.write_text(declared.to_yaml())
    path = _german_csv(tmp_path, out_of_range)
    policy = f"  schema: {schema}\n  max_rejected_fraction: 0.05"
    result = _run(store, path, policy)
    assert result.status == "failed"
    assert "quarantined 60 of 1000 rows (6.0%, policy allows 5.0%): age above max 150 (60)" in (
        result.error or ""
    )


def test_drift_against_a_reference_fails_a_shifted_batch(
    tmp_path: Path, store: LineageStore
) -> None:
    def older(frame: pd.DataFrame) -> None:
        frame["age"] = frame["age"] + 15

    path = _german_csv(tmp_path, older)
    result = _run(store, path, "  drift: {reference: german}")
    assert result.status == "failed"
    assert "drifted from its reference in ['age']" in (result.error or "")
    report = _run(store, path, "  drift: {reference: german, action: report}")
    assert report.status == "completed"
    drift = _json(store, report, "validate.quality")["drift"]  # type: ignore[index]
    assert drift["drifted_columns"] == ["age"]


def test_an_unshifted_batch_passes_its_drift_check(tmp_path: Path, store: LineageStore) -> None:
    result = _run(store, _german_csv(tmp_path), "  drift: {reference: german}")
    assert result.status == "completed", result.error


def test_protected_groups_are_reported_with_base_rates(tmp_path: Path, store: LineageStore) -> None:
    result = _run(store, _german_csv(tmp_path), "  protected: [foreign_worker]")
    groups = _json(store, result, "validate.quality")["groups"]  # type: ignore[index]
    frame = datasets.load("german").frame
    expected = frame.groupby(frame["foreign_worker"].astype(str))["credit"].apply(
        lambda s: (s == "bad").mean()
    )
    got = {g["group"]: g["base_rate"] for g in groups}
    assert got == pytest.approx(expected.to_dict())


def test_label_errors_are_found_ranked_and_dropped(tmp_path: Path, store: LineageStore) -> None:
    flipped: list[int] = []

    def flip(frame: pd.DataFrame) -> None:
        labels, where = flip_labels(frame["credit"].to_numpy(), 0.1, seed=1)
        frame["credit"] = labels
        flipped.extend(int(i) for i in where)

    path = _german_csv(tmp_path, flip)
    policy = "  label_errors: {action: drop, max_fraction: 0.4, estimator: logistic_regression}"
    result = _run(store, path, policy)
    assert result.status == "completed", result.error
    issues = _json(store, result, "label_errors.issues")
    dropped = _csv(store, result, "label_errors.dropped")
    rows = [r["row"] for r in issues["rows"]]  # type: ignore[index]
    assert sorted(dropped["_row"]) == sorted(rows)
    confidences = [r["self_confidence"] for r in issues["rows"]]  # type: ignore[index]
    assert confidences == sorted(confidences)
    train_rows = set(_csv_parquet(store, result, "split.train")["_row"])
    precision, recall = precision_recall(rows, [r for r in flipped if r in train_rows])
    assert precision > 0.15 and recall > 0.5  # German Credit is hard; ~3x better than chance
    kept = _csv_parquet(store, result, "label_errors.train")
    assert len(kept) == len(train_rows) - len(rows)
    assert dropped["_reasons"].str.startswith("likely label error: given").all()


def _csv_parquet(store: LineageStore, result: RunResult, ref: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(store.read_artifact(result.artifacts[ref])))


def test_too_many_label_errors_fail_the_step(tmp_path: Path, store: LineageStore) -> None:
    policy = "  label_errors: {action: fail, max_fraction: 0.01, estimator: logistic_regression}"
    result = _run(store, _german_csv(tmp_path), policy)
    assert result.status == "failed"
    assert "look mislabeled, more than the policy's max_fraction 1.0%" in (result.error or "")


def test_an_inline_schema_with_a_rule_quarantines_breaking_rows(
    tmp_path: Path, store: LineageStore
) -> None:
    declared = datasets.load("german").schema.model_dump(mode="json", exclude_none=True)
    declared["rules"] = [{"name": "short_loans", "expr": "duration_months <= 60"}]
    policy = "  max_rejected_fraction: 0.01\n  schema: " + json.dumps(declared)
    result = _run(store, _german_csv(tmp_path), policy)
    assert result.status == "completed", result.error
    quarantine = _csv(store, result, "validate.rejected")
    original = datasets.load("german").frame
    assert sorted(quarantine["_row"]) == sorted(original.index[original["duration_months"] > 60])


def test_a_registered_version_hands_back_its_imputation(
    tmp_path: Path, store: LineageStore
) -> None:
    from mlwarden.data import Imputation

    path = _german_csv(tmp_path, _blank("duration_months", BLANKS))
    policy = "  missing:\n    duration_months: {action: impute, strategy: mean}"
    assert _run(store, path, policy).status == "completed"
    registry = ModelRegistry(store)
    stored = registry.imputation(registry.get("credit@1"))
    imputation = Imputation.model_validate(stored)
    filled = imputation.apply(pd.DataFrame({"duration_months": [np.nan, 12.0]}))
    assert filled["duration_months"].tolist() == [imputation.columns[0].value, 12.0]


def test_training_rows_without_any_feature_value_fail_naming_the_column(
    tmp_path: Path, store: LineageStore
) -> None:
    rng = np.random.default_rng(0)
    x = np.full(400, np.nan)
    x[0] = 1.0  # one observed value: the split's training part of some fold has none
    credit = np.where(rng.normal(size=400) > 0, "bad", "good")
    path = tmp_path / "sparse.csv"
    pd.DataFrame({"x": x, "credit": credit}).to_csv(path, index=False)
    result = _run(store, path, "")
    assert result.status == "failed"
    assert "no feature has a value in the" in (result.error or "")
    assert "x (1)" in (result.error or "") or "x (0)" in (result.error or "")
    assert verify_store(store).ok
