"""Validation keeps every row: accepted + rejected = in, each rejected row with its reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlwarden.data import ColumnSchema, TableSchema, infer_schema, validate_table
from mlwarden.data._validate import MissingPolicy

SCHEMA = TableSchema(
    columns={
        "age": ColumnSchema(type="integer", min=0, max=150),
        "workclass": ColumnSchema(
            type="category", categories=["Private", "State-gov"], nullable=True
        ),
        "hours": ColumnSchema(type="float", min=0, max=168),
        "income": ColumnSchema(type="category", categories=["<=50K", ">50K"]),
    },
    label="income",
)


def _table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [39, 200, 25, 41, 33, 50],
            "workclass": ["Private", "State-gov", "Pirate", None, "Private", "Private"],
            "hours": ["40", "38", "20", "45", "forty", "60"],
            "income": ["<=50K", ">50K", "<=50K", None, ">50K", ">50K"],
        }
    )


def test_planted_bad_rows_are_rejected_with_their_reasons() -> None:
    accepted, rejected, report = validate_table(_table(), SCHEMA)
    assert (report.rows_in, report.rows_accepted, report.rows_rejected) == (6, 2, 4)
    assert list(rejected["_row"]) == [1, 2, 3, 4]
    reasons = dict(zip(rejected["age"], rejected["_reasons"], strict=True))
    assert reasons[200] == "age: above max 150"
    assert reasons[25] == "workclass: not an allowed value"
    assert reasons[41] == "income: missing value"
    assert reasons[33] == "hours: not a number"
    assert list(accepted["age"]) == [39, 50]
    assert accepted["hours"].dtype == np.float64


def test_the_report_counts_each_rule_with_examples() -> None:
    _, _, report = validate_table(_table(), SCHEMA)
    by_rule = {(i.column, i.rule): i for i in report.issues}
    assert by_rule[("hours", "not a number")].examples == ["'forty'"]
    assert by_rule[("age", "above max 150")].count == 1


def test_a_missing_column_quarantines_every_row_naming_it() -> None:
    _accepted, quarantined, report = validate_table(_table().drop(columns=["hours"]), SCHEMA)
    assert report.missing_columns == ["hours"]
    assert (report.rows_accepted, report.rows_rejected) == (0, 6)
    assert quarantined["_reasons"].str.contains("hours: column is missing from the table").all()


def test_unknown_columns_are_reported_and_left_out() -> None:
    frame = _table().assign(extra=1)
    accepted, _, report = validate_table(frame, SCHEMA)
    assert report.unknown_columns == ["extra"]
    assert "extra" not in accepted.columns


def test_an_inferred_schema_round_trips_through_yaml(tmp_path) -> None:  # type: ignore[no-untyped-def]
    schema = infer_schema(_table(), label="income")
    assert schema.columns["age"].type == "integer"
    assert schema.columns["hours"].type == "category"  # strings as given
    path = tmp_path / "schema.yaml"
    path.write_text(schema.to_yaml())
    assert TableSchema.from_yaml(path) == schema


@settings(max_examples=60, deadline=None)
@given(
    ages=st.lists(
        st.one_of(st.integers(-50, 300), st.none(), st.just("x")), min_size=0, max_size=40
    )
)
def test_rows_in_equal_accepted_plus_rejected(ages: list[object]) -> None:
    frame = pd.DataFrame({"age": pd.Series(ages, dtype=object)})
    schema = TableSchema(columns={"age": ColumnSchema(type="integer", min=0, max=150)})
    accepted, rejected, report = validate_table(frame, schema)
    assert report.rows_in == len(ages) == len(accepted) + len(rejected)
    assert report.rows_accepted == len(accepted)
    assert rejected["_reasons"].str.len().gt(0).all()


def test_unique_regex_and_cross_column_rules() -> None:
    schema = TableSchema.model_validate(
        {
            "columns": {
                "id": {"type": "integer", "unique": True},
                "email": {"type": "string", "regex": r"[^@\s]+@[^@\s]+", "nullable": True},
                "age": {"type": "integer"},
                "hours_per_week": {"type": "float", "nullable": True},
            },
            "rules": [
                {"name": "week", "expr": "hours_per_week <= 24 * 7"},
                {"name": "child_labour", "expr": "age >= 16 or hours_per_week == 0"},
            ],
        }
    )
    frame = pd.DataFrame(
        {
            "id": [1, 2, 2, 4, 5],
            "email": ["a@b.org", "bad address", "c@d.org", None, "e@f.org"],
            "age": [30, 40, 50, 12, 33],
            "hours_per_week": [40.0, 50.0, 200.0, 10.0, None],
        }
    )
    accepted, quarantined, _report = validate_table(frame, schema)
    reasons = dict(zip(quarantined["_row"], quarantined["_reasons"], strict=True))
    assert reasons == {
        1: "email: does not match " + repr(r"[^@\s]+@[^@\s]+"),
        2: "id: duplicate value; rule week: hours_per_week <= 24 * 7",
        3: "rule child_labour: age >= 16 or hours_per_week == 0",
    }
    assert list(accepted["id"]) == [1, 5]  # a missing operand leaves a rule unjudged


def test_a_rule_cannot_run_code() -> None:
    with pytest.raises(ValueError, match="calls a function rules do not offer"):
        TableSchema.model_validate(
            {"columns": {}, "rules": [{"name": "x", "expr": "__import__('os').system('id')"}]}
        )


@pytest.mark.parametrize(
    ("policy", "accepted_rows", "failures"),
    [
        (MissingPolicy(action="drop"), 4, {}),
        (MissingPolicy(action="fail"), 4, {"workclass": 1}),
        (MissingPolicy(action="impute", strategy="most_frequent"), 5, {}),
        (MissingPolicy(action="keep"), 5, {}),
    ],
)
def test_missing_value_policies(
    policy: MissingPolicy, accepted_rows: int, failures: dict[str, int]
) -> None:
    frame = _table().drop(index=[1, 2, 4]).reset_index(drop=True)  # keep row 3 (workclass None)
    frame.loc[1, "income"] = ">50K"
    frame = pd.concat([frame, frame.iloc[[0, 0]]], ignore_index=True)
    _, _quarantined, report = validate_table(frame, SCHEMA, {"workclass": policy})
    assert report.rows_accepted == accepted_rows
    assert report.missing_failures == failures
    assert report.missing_rates["workclass"] == pytest.approx(0.2)


def test_an_impute_policy_needs_a_strategy() -> None:
    with pytest.raises(ValueError, match="needs a strategy"):
        MissingPolicy(action="impute")
