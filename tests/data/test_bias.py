"""Label balance, group statistics and per-group rates on hand-made cases and on real Adult."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlwarden import datasets
from mlwarden.data._bias import (
    MISSING_GROUP,
    group_metrics,
    group_stats,
    label_balance,
)
from mlwarden.errors import DataError


@pytest.fixture(scope="module")
def adult() -> datasets.Dataset:
    """UCI Adult, loaded once for the module."""
    return datasets.load("adult")


def _block(group: str | None, n_pos: int, n_neg: int, tp: int, fp: int) -> pd.DataFrame:
    """Rows of one group: n_pos actual positives (tp of them selected), n_neg negatives (fp)."""
    truth = ["yes"] * n_pos + ["no"] * n_neg
    pred = ["yes"] * tp + ["no"] * (n_pos - tp) + ["yes"] * fp + ["no"] * (n_neg - fp)
    return pd.DataFrame({"group": [group] * (n_pos + n_neg), "truth": truth, "pred": pred})


@pytest.fixture
def planted() -> pd.DataFrame:
    """Four named groups and two rows with no group, with known rates.

    A: 40 rows, selection 20/40, TPR 15/20, FPR 5/20.   B: 40 rows, selection 8/40, TPR 5/10,
    FPR 3/30.   C: 30 rows, no positives, selection 6/30.   D: 5 rows, all selected.
    """
    blocks = [
        _block("A", 20, 20, 15, 5),
        _block("B", 10, 30, 5, 3),
        _block("C", 0, 30, 0, 6),
        _block("D", 5, 0, 5, 0),
        _block(None, 1, 1, 1, 0),
    ]
    frame = pd.concat(blocks, ignore_index=True)
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)  # order must not matter


# ------------------------------------------------------------------------------ label balance


def test_label_balance_counts_shares_and_ratio() -> None:
    balance = label_balance(["a"] * 6 + [None] + ["b"] * 2)
    assert balance.n == 9 and balance.n_missing == 1
    assert [(c.label, c.count, c.share) for c in balance.classes] == [
        ("a", 6, 0.75),
        ("b", 2, 0.25),
    ]
    assert (balance.majority, balance.minority, balance.imbalance_ratio) == ("a", "b", 3.0)


def test_label_balance_of_one_class_has_no_ratio() -> None:
    balance = label_balance(np.array([1, 1, 1]))
    assert balance.imbalance_ratio is None
    assert balance.majority == balance.minority == 1
    assert isinstance(balance.majority, int)  # numpy scalars become Python ones


def test_label_balance_on_adult(adult: datasets.Dataset) -> None:
    counts = adult.y.value_counts()
    balance = label_balance(adult.y)
    assert balance.majority == "<=50K" and balance.minority == ">50K"
    assert balance.imbalance_ratio == pytest.approx(counts["<=50K"] / counts[">50K"])
    assert balance.imbalance_ratio == pytest.approx(3.18, abs=0.01)


# ------------------------------------------------------------------------------- group stats


def test_group_stats_on_adult_match_pandas(adult: datasets.Dataset) -> None:
    frame = adult.frame
    stats = group_stats(frame, "income", ["sex", "race"], ">50K")
    expected = (
        frame.assign(pos=frame["income"] == ">50K").groupby(["sex"])["pos"].agg(["size", "mean"])
    )
    by_group = {(s.attribute, s.group): s for s in stats}
    for sex in ("Male", "Female"):
        got = by_group[("sex", sex)]
        assert got.size == expected.loc[sex, "size"]
        assert got.base_rate == pytest.approx(expected.loc[sex, "mean"], abs=1e-12)
        assert got.share == pytest.approx(got.size / len(frame))
    assert by_group[("sex", "Male")].base_rate == pytest.approx(0.30, abs=0.01)
    assert by_group[("sex", "Female")].base_rate == pytest.approx(0.11, abs=0.01)
    races = frame.groupby("race")["income"].apply(lambda s: (s == ">50K").mean())
    for race, rate in races.items():
        assert by_group[("race", str(race))].base_rate == pytest.approx(rate, abs=1e-12)
    for attribute in ("sex", "race"):
        shares = [s.share for s in stats if s.attribute == attribute]
        assert sum(shares) == pytest.approx(1.0)
        assert shares == sorted(shares, reverse=True)  # largest group first


def test_group_stats_put_missing_values_in_their_own_group(adult: datasets.Dataset) -> None:
    frame = adult.frame
    stats = [s for s in group_stats(frame, "income", ["workclass"], ">50K")]
    missing = next(s for s in stats if s.group == MISSING_GROUP)
    rows = frame["workclass"].isna()
    assert missing.size == rows.sum() > 0
    assert missing.base_rate == pytest.approx((frame.loc[rows, "income"] == ">50K").mean())
    assert sum(s.size for s in stats) == len(frame)


def test_group_stats_errors_name_what_was_given() -> None:
    frame = pd.DataFrame({"sex": ["M", "F"], "y": [1, 0]})
    with pytest.raises(DataError, match=r"protected column\(s\) \['religion'\].*'sex', 'y'"):
        group_stats(frame, "y", ["sex", "religion"], 1)
    with pytest.raises(DataError, match=r"label column\(s\) \['income'\]"):
        group_stats(frame, "income", ["sex"], 1)
    with pytest.raises(DataError, match=r"positive class '>50K' is not among .*\[0, 1\]"):
        group_stats(frame, "y", ["sex"], ">50K")


# ----------------------------------------------------------------------------- group metrics


def test_group_metrics_rates_and_differences(planted: pd.DataFrame) -> None:
    report = group_metrics(planted["truth"], planted["pred"], planted["group"], "yes")
    a, b, c, d = (report.group(g) for g in "ABCD")
    assert (a.n, a.selection_rate, a.tpr, a.fpr) == (40, 0.5, 0.75, 0.25)
    assert (b.n, b.selection_rate, b.tpr, b.fpr) == (40, 0.2, 0.5, 0.1)
    assert (c.n, c.selection_rate, c.tpr, c.fpr) == (30, 0.2, None, 0.2)  # TPR undefined
    assert (d.n, d.selection_rate, d.tpr, d.fpr) == (5, 1.0, 1.0, None)  # FPR undefined
    assert report.group(MISSING_GROUP).n == 2
    assert report.attribute == "group" and report.n == len(planted)
    # D (5 rows) and the missing group (2 rows) are below 30: D's selection rate of 1.0 and TPR
    # of 1.0 would otherwise be the maxima.
    assert report.demographic_parity_difference == pytest.approx(0.5 - 0.2)
    assert report.disparate_impact_ratio == pytest.approx(0.2 / 0.5)
    assert report.passes_four_fifths_rule is False
    assert report.equal_opportunity_difference == pytest.approx(0.75 - 0.5)  # C has no TPR
    assert (report.highest_selection, report.lowest_selection) == ("A", "B")
    assert (report.highest_tpr, report.lowest_tpr) == ("A", "B")


def test_group_metrics_say_which_groups_were_excluded_and_why(planted: pd.DataFrame) -> None:
    report = group_metrics(planted["truth"], planted["pred"], planted["group"], "yes")
    excluded = {e.group: e for e in report.excluded}
    assert set(excluded) == {"C", "D", MISSING_GROUP}
    assert excluded["D"].measures == [
        "demographic_parity",
        "disparate_impact",
        "equal_opportunity",
    ]
    assert excluded["D"].reason == "5 rows < min_group_size 30"
    assert excluded["C"].measures == ["equal_opportunity"]
    assert "no actual positives" in excluded["C"].reason
    assert [g.group for g in report.groups if g.compared] == ["A", "B", "C"]


def test_min_group_size_decides_which_groups_are_compared(planted: pd.DataFrame) -> None:
    report = group_metrics(
        planted["truth"], planted["pred"], planted["group"], "yes", min_group_size=1
    )
    assert [(e.group, e.measures) for e in report.excluded] == [("C", ["equal_opportunity"])]
    assert report.demographic_parity_difference == pytest.approx(1.0 - 0.2)  # D vs B
    assert report.disparate_impact_ratio == pytest.approx(0.2 / 1.0)
    assert report.equal_opportunity_difference == pytest.approx(1.0 - 0.5)  # D vs B
    assert report.highest_selection == "D" and report.group(MISSING_GROUP).selection_rate == 0.5


def test_group_metrics_with_fewer_than_two_groups_measures_nothing() -> None:
    frame = _block("A", 20, 20, 10, 10)
    report = group_metrics(frame["truth"], frame["pred"], frame["group"], "yes")
    assert report.demographic_parity_difference is None
    assert report.equal_opportunity_difference is None
    assert report.disparate_impact_ratio is None
    assert report.passes_four_fifths_rule is None


def test_group_metrics_with_nobody_selected_has_no_ratio() -> None:
    frame = pd.concat([_block("A", 20, 20, 0, 0), _block("B", 10, 30, 0, 0)])
    report = group_metrics(frame["truth"], frame["pred"], frame["group"], "yes")
    assert report.demographic_parity_difference == 0.0
    assert report.equal_opportunity_difference == 0.0
    assert report.disparate_impact_ratio is None


def test_group_metrics_errors(planted: pd.DataFrame) -> None:
    truth, pred, group = planted["truth"], planted["pred"], planted["group"]
    with pytest.raises(DataError, match="got lengths 117, 116 and 117"):
        group_metrics(truth, pred[:-1], group, "yes")
    with pytest.raises(DataError, match=r"positive class 'maybe' is not among .*\['no', 'yes'\]"):
        group_metrics(truth, pred, group, "maybe")
    with pytest.raises(DataError, match="1 missing labels"):
        group_metrics(truth.where(truth.index != 3), pred, group, "yes")
    with pytest.raises(DataError, match="min_group_size must be at least 1, got 0"):
        group_metrics(truth, pred, group, "yes", min_group_size=0)
    with pytest.raises(DataError, match="2 values, 2 of them missing"):
        label_balance([None, float("nan")])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.booleans(), st.booleans()), min_size=1, max_size=60
    ),
    st.integers(min_value=1, max_value=8),
)
def test_differences_match_a_pandas_groupby(
    rows: list[tuple[str, bool, bool]], min_group_size: int
) -> None:
    extra = pd.DataFrame({"group": ["z"], "truth": [True], "pred": [False]})  # a positive exists
    full = pd.concat(
        [pd.DataFrame(rows, columns=["group", "truth", "pred"]), extra], ignore_index=True
    )
    report = group_metrics(
        full["truth"].to_numpy(), full["pred"].to_numpy(), full["group"], True, min_group_size
    )
    sizes = full.groupby("group").size()
    kept = full[full["group"].map(sizes) >= min_group_size]
    selection = kept.groupby("group")["pred"].mean()
    tpr = kept[kept["truth"]].groupby("group")["pred"].mean()
    expected_dp = selection.max() - selection.min() if len(selection) > 1 else None
    expected_eo = tpr.max() - tpr.min() if len(tpr) > 1 else None
    assert report.demographic_parity_difference == pytest.approx(expected_dp)
    assert report.equal_opportunity_difference == pytest.approx(expected_eo)
    dp = report.demographic_parity_difference
    assert dp is None or 0.0 <= dp <= 1.0
