"""``mlwarden schema infer`` and ``mlwarden validate`` on a user's own CSV files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tests.cli.test_cli import mlwarden


def _table(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(50, 10, n).round(2)
    y = np.where(x1 > 50, "phishing", "legitimate")
    return pd.DataFrame({"x1": x1, "c": rng.choice(["a", "b"], n), "y": y})


def test_validate_against_a_reference_with_bad_rows_writes_the_quarantine(
    tmp_path: Path,
) -> None:
    _table().to_csv(tmp_path / "ref.csv", index=False)
    batch = _table().astype({"x1": object})
    batch.loc[[4, 40], "x1"] = ["oops", "n.a."]
    batch.to_csv(tmp_path / "batch.csv", index=False)
    result = mlwarden(
        "validate", "batch.csv", "--against", "ref.csv", "--out", "v", "--max-rejected", "0.01",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "600 rows in = 598 accepted + 2 quarantined" in result.stdout
    quarantine = pd.read_csv(tmp_path / "v" / "quarantine.csv")
    assert sorted(quarantine["_row"]) == [4, 40]
    report = json.loads((tmp_path / "v" / "validation.json").read_text())
    assert report["drift"]["drifted"] is False
    assert {c["column"] for c in report["drift"]["columns"]} == {"x1", "c", "y"}


def test_schema_infer_says_what_it_saw_and_keeps_the_column_numeric(tmp_path: Path) -> None:
    frame = _table().astype({"x1": object})
    frame.loc[[1, 2, 3], "x1"] = ["unknown", "12,5", "--"]
    frame.loc[9, "y"] = "phishng"
    frame.to_csv(tmp_path / "t.csv", index=False, sep=";")
    result = mlwarden("schema", "infer", "t.csv", "--label", "y", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    schema = yaml.safe_load(result.stdout)
    assert schema["columns"]["x1"]["type"] == "float"
    stderr = " ".join(result.stderr.split())
    assert "x1: float, but 3 of 600 values are not numbers ('unknown', '12,5', '--')" in stderr
    assert "label y: 2 classes ['legitimate', 'phishing']" in stderr
    assert "{'phishng': 1}" in stderr


def test_schema_infer_margin_widens_ranges(tmp_path: Path) -> None:
    pd.DataFrame({"x": [10.0, 20.0, 30.0], "y": [0, 1, 1]}).to_csv(tmp_path / "t.csv", index=False)
    result = mlwarden("schema", "infer", "t.csv", "--label", "y", "--margin", "0.1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    x = yaml.safe_load(result.stdout)["columns"]["x"]
    assert (x["min"], x["max"]) == (8.0, 32.0)


def test_a_header_only_file_says_zero_data_rows(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("x1,c,y\n")
    result = mlwarden("schema", "infer", "t.csv", cwd=tmp_path)
    assert result.returncode == 3
    assert "t.csv has a header (3 columns) but 0 data rows" in " ".join(result.stderr.split())


def test_a_run_on_a_table_of_duplicates_shows_both_held_out_lines(tmp_path: Path) -> None:
    half = _table(300)
    doubled = pd.concat([half, half]).sample(frac=1, random_state=0)
    doubled.to_csv(tmp_path / "x.csv", index=False)
    repeats = int(doubled.duplicated().sum())
    (tmp_path / "spec.yaml").write_text(
        "name: t\n"
        "data: {path: x.csv, label: y, positive: phishing}\n"
        "train: {estimator: logistic_regression, cv: 3, n_jobs: 1}\n"
        "checks:\n  - {check: performance_floor, metric: accuracy, min: 0.5}\n"
        "register: {name: t}\n"
    )
    result = mlwarden("run", "spec.yaml", "--store", "store", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "held-out: accuracy" in result.stdout
    assert "test rows not seen in training (" in result.stdout
    (html,) = (tmp_path / "store" / "reports" / "t").glob("*/report.html")
    text = html.read_text()
    assert "not seen in training" in text
    assert f"Duplicate rows: {repeats} of 600 ({repeats / 6:.1f}%)" in text


def test_a_score_undefined_on_the_unseen_rows_prints_as_n_a(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    x[5:] = np.nan  # nearly every row is the same row: one unseen test row, one class
    label = np.where(rng.normal(size=400) > 0, "bad", "good")
    pd.DataFrame({"x": x, "y": label}).to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "spec.yaml").write_text(
        "name: t\n"
        "data: {path: t.csv, label: y, positive: bad}\n"
        "train: {estimator: logistic_regression, cv: 3, n_jobs: 1}\n"
        "checks:\n  - {check: performance_floor, metric: accuracy, min: 0.1}\n"
        "register: {name: t}\n"
    )
    result = mlwarden("run", "spec.yaml", "--store", "store", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    said = " ".join(result.stdout.split())
    assert "test rows not seen in training" in said and "ROC AUC n/a" in said
