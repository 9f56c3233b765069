"""Drift statistics match their formulas, and a planted shift on Adult flags exactly its columns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from scipy.stats import chi2_contingency, ks_2samp

from mlwarden import datasets
from mlwarden.data import ColumnSchema, TableSchema
from mlwarden.data._drift import (
    PSI_EPSILON,
    ColumnThresholds,
    DriftReport,
    DriftThresholds,
    chi2_test,
    drift_report,
    jensen_shannon_distance,
    ks_test,
    population_stability_index,
)
from mlwarden.errors import DataError

NUMERIC = ["age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
CATEGORICAL = [
    "workclass",
    "education",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native_country",
    "income",
]
# Adult has 15 columns, each tested once: a Bonferroni level of 1% / 15 keeps the chance that a
# random half/half split flags any column at most 1% (0 of 100 seeded splits did when tried).
FAMILY_ALPHA = 0.01 / 15
BONFERRONI = DriftThresholds(ks_pvalue=FAMILY_ALPHA, chi2_pvalue=FAMILY_ALPHA)


def _psi_term(actual: float, expected: float) -> float:
    return (actual - expected) * math.log(actual / expected)


@pytest.fixture(scope="module")
def halves() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Adult split at random into two halves drawn from one population."""
    frame = datasets.load("adult").frame
    in_reference = np.random.default_rng(0).permutation(len(frame)) < len(frame) // 2
    return frame[in_reference].reset_index(drop=True), frame[~in_reference].reset_index(drop=True)


@pytest.fixture(scope="module")
def shifted(halves: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The current half ten years older, with 30% of its women recorded as men."""
    reference, current = halves
    current = current.copy()
    current["age"] = current["age"] + 10
    women = current.index[current["sex"] == "Female"]
    flipped = np.random.default_rng(1).choice(women, size=int(0.3 * len(women)), replace=False)
    current.loc[flipped, "sex"] = "Male"
    return reference, current


@pytest.fixture(scope="module")
def shifted_report(shifted: tuple[pd.DataFrame, pd.DataFrame]) -> DriftReport:
    return drift_report(*shifted, thresholds=BONFERRONI)


# --- PSI ---------------------------------------------------------------------------------------


def test_psi_of_a_sample_against_itself_is_zero() -> None:
    values = np.random.default_rng(2).normal(size=2_000)
    assert population_stability_index(values, values) == pytest.approx(0.0, abs=1e-12)
    words = ["a", "b", "b", "c", "c", "c"]
    assert population_stability_index(words, words) == pytest.approx(0.0, abs=1e-12)


def test_categorical_psi_matches_the_formula() -> None:
    reference = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    current = ["a"] * 40 + ["b"] * 40 + ["c"] * 20
    expected = _psi_term(0.4, 0.5) + _psi_term(0.4, 0.3) + _psi_term(0.2, 0.2)
    assert expected == pytest.approx(0.051082, abs=1e-6)
    assert population_stability_index(reference, current) == pytest.approx(expected)


def test_an_unseen_category_counts_with_epsilon_for_its_empty_reference_share() -> None:
    reference = ["a"] * 90 + ["b"] * 10
    current = ["a"] * 80 + ["b"] * 10 + ["c"] * 10
    expected = _psi_term(0.8, 0.9) + _psi_term(0.1, 0.1) + _psi_term(0.1, PSI_EPSILON)
    assert population_stability_index(reference, current) == pytest.approx(expected)


def test_numeric_psi_bins_on_reference_quantiles_and_catches_outliers_in_the_outer_bins() -> None:
    reference = np.arange(100.0)  # quartile edges 24, 49, 74: four bins of 25
    below_half = np.arange(50.0)  # fills the two lower bins
    outliers = np.array([-1_000.0] * 50 + [1_000.0] * 50)  # the two outer bins
    expected = 2 * _psi_term(0.5, 0.25) + 2 * _psi_term(PSI_EPSILON, 0.25)
    assert population_stability_index(reference, below_half, bins=4) == pytest.approx(expected)
    assert population_stability_index(reference, outliers, bins=4) == pytest.approx(expected)


def test_a_constant_reference_still_sees_a_shift_either_way() -> None:
    constant = np.full(100, 5.0)
    assert population_stability_index(constant, constant) == 0.0
    assert population_stability_index(constant, np.full(10, 4.0)) > 1.0
    assert population_stability_index(constant, np.full(10, 6.0)) > 1.0


def test_integer_codes_can_be_compared_as_categories() -> None:
    reference, current = [1] * 50 + [2] * 50, [1] * 50 + [3] * 50
    as_categories = population_stability_index(reference, current, kind="categorical")
    expected = _psi_term(0.5, 0.5) + _psi_term(PSI_EPSILON, 0.5) + _psi_term(0.5, PSI_EPSILON)
    assert as_categories == pytest.approx(expected)


# --- tests and distances -----------------------------------------------------------------------


def test_ks_is_scipy_ks_2samp_on_the_non_missing_values() -> None:
    rng = np.random.default_rng(3)
    reference, current = rng.normal(size=500), rng.normal(0.5, size=400)
    with_gaps = np.concatenate([current, [np.nan] * 20])
    expected = ks_2samp(reference, current)
    result = ks_test(reference, with_gaps)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.pvalue == pytest.approx(expected.pvalue)
    assert result.pvalue < 1e-6


def test_chi2_handles_a_category_absent_from_one_side() -> None:
    reference = ["a"] * 60 + ["b"] * 40
    current = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    expected = chi2_contingency(np.array([[60, 40, 0], [50, 30, 20]]))
    result = chi2_test(reference, current)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.pvalue == pytest.approx(expected.pvalue)


def test_chi2_of_a_single_shared_category_is_no_evidence_of_drift() -> None:
    assert tuple(chi2_test(["a"] * 5, ["a"] * 7)) == (0.0, 1.0)


def test_unused_categories_of_a_categorical_dtype_are_ignored() -> None:
    dtype = pd.CategoricalDtype(["a", "b", "never"])
    reference = pd.Series(["a"] * 6 + ["b"] * 4, dtype=dtype)
    current = pd.Series(["a"] * 5 + ["b"] * 5, dtype=dtype)
    result = chi2_test(reference, current)
    expected = chi2_contingency(np.array([[6, 4], [5, 5]]))
    assert result.pvalue == pytest.approx(expected.pvalue)
    assert population_stability_index(reference, current) == pytest.approx(
        _psi_term(0.5, 0.6) + _psi_term(0.5, 0.4)
    )


def test_js_distance_is_zero_for_equal_and_one_for_disjoint_distributions() -> None:
    assert jensen_shannon_distance(["a", "b"] * 10, ["b", "a"] * 3) == pytest.approx(0.0)
    assert jensen_shannon_distance(["a"] * 10, ["b"] * 4) == pytest.approx(1.0)


def test_empty_samples_are_refused() -> None:
    with pytest.raises(DataError, match="reference sample"):
        population_stability_index([np.nan, np.nan], [1.0])
    with pytest.raises(DataError, match="current sample"):
        jensen_shannon_distance(["a"], pd.Series([None], dtype="string"))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(allow_nan=False), min_size=1, max_size=60),
    st.lists(st.floats(allow_nan=False), min_size=1, max_size=60),
    st.integers(min_value=2, max_value=20),
)
def test_psi_is_never_negative(reference: list[float], current: list[float], bins: int) -> None:
    psi = population_stability_index(reference, current, bins=bins)
    assert math.isfinite(psi)
    assert psi >= 0.0


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from("abcde"), min_size=1, max_size=60),
    st.lists(st.sampled_from("abcdef"), min_size=1, max_size=60),
)
def test_js_distance_lies_in_the_unit_interval(reference: list[str], current: list[str]) -> None:
    assert 0.0 <= jensen_shannon_distance(reference, current) <= 1.0
    assert population_stability_index(reference, current) >= 0.0


# --- the report on Adult -----------------------------------------------------------------------


def test_two_random_halves_of_adult_do_not_drift(
    halves: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    report = drift_report(*halves, thresholds=BONFERRONI)
    assert report.drifted_columns == []
    assert not report.drifted
    kinds = {c.column: c.kind for c in report.columns}
    assert kinds == {
        **dict.fromkeys(NUMERIC, "numeric"),
        **dict.fromkeys(CATEGORICAL, "categorical"),
    }
    assert max(c.psi for c in report.columns) < 0.05


def test_a_planted_shift_flags_exactly_its_columns(shifted_report: DriftReport) -> None:
    assert shifted_report.drifted_columns == ["age", "sex"]
    assert shifted_report.drifted
    assert shifted_report.drifted_share == pytest.approx(2 / 15)
    by_name = {c.column: c for c in shifted_report.columns}
    age, sex = by_name["age"], by_name["sex"]
    assert age.psi > 1.0
    assert [r.split()[0] for r in age.reasons] == ["psi", "ks"]
    assert age.reasons[0] == f"psi {age.psi:.3g} > 0.2"
    assert age.chi2_pvalue is None and age.js_distance is None
    # A third fewer women is a modest change in size (PSI ~0.05) but unmistakable in significance.
    assert sex.psi < 0.2
    assert any(r.startswith("chi2 p-value") for r in sex.reasons)
    assert sex.ks_statistic is None and sex.ks_pvalue is None


def test_missing_values_are_dropped_and_their_rates_reported(
    halves: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    reference, current = halves
    report = drift_report(reference, current, columns=["workclass", "age"])
    workclass = report.columns[0]
    non_missing = reference["workclass"].notna()
    assert workclass.n_reference == int(non_missing.sum())
    assert workclass.missing_reference == pytest.approx(1 - non_missing.mean())
    assert workclass.missing_current == pytest.approx(current["workclass"].isna().mean())
    assert workclass.missing_reference > 0.03
    expected_psi = population_stability_index(reference["workclass"], current["workclass"])
    assert workclass.psi == pytest.approx(expected_psi)
    assert report.columns[1].missing_reference == 0.0


def test_per_column_overrides_take_effect(shifted: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    lenient = {
        "age": ColumnThresholds(psi=5.0, ks_pvalue=0.0),
        "sex": ColumnThresholds(chi2_pvalue=0.0, js_distance=1.0),
        "race": ColumnThresholds(js_distance=0.0),
    }
    thresholds = BONFERRONI.model_copy(update={"columns": lenient})
    report = drift_report(*shifted, thresholds=thresholds)
    assert report.drifted_columns == ["race"]
    race = next(c for c in report.columns if c.column == "race")
    assert race.reasons == [f"js distance {race.js_distance:.3g} > 0"]


def test_max_drifted_share_sets_how_many_columns_may_drift(
    shifted: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    def verdict(share: float) -> bool:
        thresholds = BONFERRONI.model_copy(update={"max_drifted_share": share})
        report = drift_report(*shifted, thresholds=thresholds)
        assert report.drifted_columns == ["age", "sex"]
        return report.drifted

    assert verdict(0.1)
    assert not verdict(2 / 15)  # the share must exceed the limit, not merely reach it
    assert not verdict(0.5)


# --- column kinds ------------------------------------------------------------------------------


def test_kinds_follow_the_categorical_list_then_the_schema_then_the_dtype() -> None:
    frame = pd.DataFrame(
        {"code": [1, 2, 3, 1], "grade": [1, 2, 2, 1], "flag": [True, False, True, True]}
    )
    schema = TableSchema(
        columns={"grade": ColumnSchema(type="category"), "code": ColumnSchema(type="integer")}
    )
    report = drift_report(frame, frame, categorical=["code"], schema=schema)
    assert {c.column: c.kind for c in report.columns} == {
        "code": "categorical",
        "grade": "categorical",
        "flag": "categorical",
    }
    assert not report.drifted
    plain = drift_report(frame, frame)
    assert [c.kind for c in plain.columns] == ["numeric", "numeric", "categorical"]


def test_a_schema_numeric_column_holding_text_is_refused() -> None:
    frame = pd.DataFrame({"x": ["1", "two"]})
    schema = TableSchema(columns={"x": ColumnSchema(type="float")})
    with pytest.raises(DataError, match="'x'"):
        drift_report(frame, frame, schema=schema)


# --- errors ------------------------------------------------------------------------------------


def test_a_column_missing_from_the_batch_is_named() -> None:
    reference = pd.DataFrame({"age": [30, 40], "income": ["a", "b"]})
    with pytest.raises(DataError, match=r"\['income'\]"):
        drift_report(reference, reference[["age"]])


@pytest.mark.parametrize("side", ["reference", "current"])
def test_an_all_missing_column_is_named(side: str) -> None:
    full = pd.DataFrame({"age": [30.0, 40.0], "city": ["x", "y"]})
    empty = full.assign(city=pd.Series([None, None], dtype="string"))
    reference, current = (empty, full) if side == "reference" else (full, empty)
    with pytest.raises(DataError, match=f"column 'city' of the {side}"):
        drift_report(reference, current)


def test_overrides_and_categorical_lists_must_name_real_columns() -> None:
    frame = pd.DataFrame({"age": [30, 40]})
    with pytest.raises(DataError, match="agee"):
        drift_report(frame, frame, DriftThresholds(columns={"agee": ColumnThresholds(psi=1.0)}))
    with pytest.raises(DataError, match="agee"):
        drift_report(frame, frame, categorical=["agee"])


def test_thresholds_reject_unknown_fields_and_out_of_range_values() -> None:
    with pytest.raises(ValidationError):
        DriftThresholds.model_validate({"psi_limit": 0.3})
    with pytest.raises(ValidationError):
        ColumnThresholds.model_validate({"ks_pvalue": 1.5})
    with pytest.raises(ValidationError):
        DriftThresholds(max_drifted_share=-0.1)


def test_categories_typed_differently_by_their_source_still_match() -> None:
    reference = pd.DataFrame({"flag": ["True", "False"] * 50, "code": [1, 2] * 50})
    current = pd.DataFrame({"flag": [True, False] * 50, "code": [1.0, 2.0] * 50})
    report = drift_report(reference, current, categorical=["flag", "code"])
    assert not report.drifted
    assert all(c.psi == pytest.approx(0.0) for c in report.columns)
