"""A drafted threat model lists every feature with the data's values and loads as written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlwarden.attacks import ThreatModel, draft_threat_model, draft_threat_model_yaml
from mlwarden.attacks._threat_draft import DEFAULT_COST, MAX_LISTED_NUMBERS, MAX_LISTED_VALUES
from mlwarden.errors import DataError


@pytest.fixture(scope="module")
def german() -> pd.DataFrame:
    from mlwarden import datasets

    return datasets.load("german").frame


def _awkward() -> pd.DataFrame:
    """Columns that trip a naive writer: YAML keywords as text, unused categories, gaps."""
    n = 40
    return pd.DataFrame(
        {
            "yes": ["yes", "no", "1.0", "null"] * (n // 4),  # text YAML would read as bool/None
            "amount": np.linspace(0.0, 39.0 * 1.5, n),  # continuous: a range
            "flag": [True, False] * (n // 2),
            "empty": [np.nan] * n,
            "colour": pd.Categorical(["red", "blue"] * (n // 2), categories=["red", "blue", "x"]),
            "code": [f"c{i}" for i in range(n)],  # more distinct values than are listed
            "count": np.arange(n) * 3,  # integers: a range with a whole step
            "gap": [1.0, np.nan] * (n // 2),
            "y": [0, 1, 1, 1] * (n // 4),
        }
    )


def test_round_trip_the_yaml_loads_unchanged_as_the_drafted_model(
    german: pd.DataFrame, tmp_path: Path
) -> None:
    path = tmp_path / "threat.yaml"
    path.write_text(draft_threat_model_yaml(german, "credit", source="german"))
    loaded = ThreatModel.from_yaml(path)
    assert loaded == draft_threat_model(german, "credit")
    awkward = _awkward()
    path.write_text(draft_threat_model_yaml(awkward, "y"))
    assert ThreatModel.from_yaml(path) == draft_threat_model(awkward, "y")


def test_every_feature_is_listed_with_the_values_or_range_of_the_data(
    german: pd.DataFrame,
) -> None:
    threat = draft_threat_model(german, "credit")
    assert list(threat.features) == [c for c in german.columns if c != "credit"]
    assert threat.target == "good"  # the most frequent class: 700 of 1000
    assert threat.max_changes is None
    for name, constraint in threat.features.items():
        column = german[name]
        if constraint.numeric:
            assert column.nunique() > MAX_LISTED_NUMBERS
            assert (constraint.min, constraint.max) == (column.min(), column.max())
            assert constraint.step is not None and float(constraint.step).is_integer()
            # A move across the whole observed range costs the default cost of one change.
            assert constraint.change_cost(column.min(), column.max()) == pytest.approx(
                DEFAULT_COST, rel=1e-2
            )
        else:
            assert set(constraint.values or []) == set(column.unique().tolist()), name
            assert constraint.cost == DEFAULT_COST
    threat.check_columns(german.drop(columns="credit"))


def test_awkward_columns_are_kept_as_what_they_are() -> None:
    frame = _awkward()
    threat = draft_threat_model(frame, "y")
    features = threat.features
    assert "empty" not in features  # no value at all: nothing to allow
    assert features["yes"].values == ["1.0", "no", "null", "yes"]  # text stays text
    assert features["flag"].values == [False, True]
    assert features["colour"].values == ["blue", "red"]  # the unused category is left out
    assert len(features["code"].values or []) == MAX_LISTED_VALUES
    assert features["count"].numeric and features["count"].allowed()[:3] == [0, 12, 24]
    assert features["amount"].numeric and features["amount"].step == pytest.approx(5.85)
    assert features["gap"].values == [1.0]
    assert threat.target == 1
    threat.check_columns(frame.drop(columns="y"))
    text = draft_threat_model_yaml(frame, "y", source="awkward.csv")
    assert "# empty: left out, the column has no values in awkward.csv" in text
    assert "the 20 most frequent of 40 values seen" in text
    assert "count: {min: 0, max: 117, step: 12," in text


def test_the_comments_say_what_each_field_means_and_what_to_edit(german: pd.DataFrame) -> None:
    text = draft_threat_model_yaml(german, "credit", source="german.csv", path="german.yaml")
    for field in ("target:", "max_changes:", "values:", "cost:", "value_costs:", "min, max, step"):
        assert f"# {field}" in text or f"#   {field}" in text, field
    assert "delete (or comment out) every feature the attacker cannot change" in text
    assert "set real costs" in text
    assert "threat_model: german.yaml" in text
    assert "here: the most frequent class" in text
    assert "most frequent" not in draft_threat_model_yaml(german, "credit", target="bad")
    lines = [line for line in text.splitlines() if line.startswith("  ") and ":" in line]
    assert len(lines) == german.shape[1] - 1  # one line per feature, each with its note
    assert all("  # " in line for line in lines)


def test_target_and_label_are_checked_with_one_clear_message(german: pd.DataFrame) -> None:
    assert draft_threat_model(german, "credit", target="bad").target == "bad"
    assert draft_threat_model(_awkward(), "y", target="0").target == 0  # as typed on a CLI
    with pytest.raises(DataError, match=r"--target: got 'worse'; expected one of .*good, bad"):
        draft_threat_model(german, "credit", target="worse")
    with pytest.raises(DataError, match=r"--label: the table has no column 'label'"):
        draft_threat_model(german, "label")


def test_the_evasion_check_uses_the_draft_as_it_is(german: pd.DataFrame, tmp_path: Path) -> None:
    from mlwarden.audit import CheckContext, run_check
    from mlwarden.data import infer_schema
    from mlwarden.models import SklearnAdapter
    from mlwarden.pipeline._estimators import build_estimator

    path = tmp_path / "german.yaml"
    path.write_text(draft_threat_model_yaml(german, "credit"))
    X, y = german.drop(columns="credit"), german["credit"]
    schema = infer_schema(german, label="credit")
    model = build_estimator("logistic_regression", {"max_iter": 500}, schema, 0).fit(X, y)
    ctx = CheckContext(SklearnAdapter(model), X, y, X, y, "bad", schema, 0)
    params = {"threat_model": str(path), "cost_budget": 2, "max_success": 0.5, "rows": 20}
    finding = run_check("evasion", params, ctx)
    assert finding.value is not None and finding.queries > 0
    # Two changes of any feature flip most of the bad risks to "good".
    assert finding.value > 0.5
