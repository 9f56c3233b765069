"""The extraction check gates on what the query budget adds to a copy over a thief who sends
no query, per serving option."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mlwarden import datasets
from mlwarden.audit import CheckContext, Extraction, Finding, run_check
from mlwarden.models import SklearnAdapter
from mlwarden.pipeline._estimators import build_estimator


def _context(estimator: str, params: dict[str, object]) -> CheckContext:
    d = datasets.load("adult")
    complete = d.X.notna().all(axis=1)
    X, y = d.X[complete].iloc[:5000], d.y[complete].iloc[:5000]
    model = build_estimator(estimator, params, d.schema, 0).fit(X.iloc[:3000], y.iloc[:3000])
    return CheckContext(
        SklearnAdapter(model), X.iloc[:3000], y.iloc[:3000], X.iloc[3000:], y.iloc[3000:],
        d.positive, d.schema,
    )  # fmt: skip


@pytest.fixture(scope="module")
def logistic() -> CheckContext:
    return _context("logistic_regression", {"max_iter": 2000})


@pytest.fixture(scope="module")
def compared(logistic: CheckContext) -> Finding:
    params = {"max_gain": 0.05, "queries": 500, "compare_outputs": True, "output": "label"}
    return run_check("extraction", params, logistic)


def test_a_logistic_model_serving_probabilities_is_copied_by_equation_solving(
    logistic: CheckContext,
) -> None:
    finding = run_check("extraction", {"max_gain": 0.05, "queries": 500}, logistic)
    assert finding.verdict == "fail"
    fidelity, baseline = finding.details["fidelity"], finding.details["no_query_fidelity"]
    assert fidelity >= 0.99 and baseline < 0.95
    assert finding.value == pytest.approx(fidelity - baseline)
    assert finding.interval is not None and finding.interval[0] > 0.05
    assert finding.message.startswith("equation_solving copies the probabilities API")
    by_attack = finding.details["fidelity_by_attack"]
    assert set(by_attack) == {"equation_solving", "line_search", "distillation"}
    assert fidelity == max(by_attack.values())
    # equation solving needs one query per unknown (d + 1 after one-hot); the label-only line
    # search and distillation each spend up to 500; every query is counted
    rows = finding.details["tables"][0]["rows"]
    assert finding.queries == sum(r[-2] for r in rows)
    assert rows[0][1] == "equation_solving" and rows[0][-2] < 150
    assert all(r[-2] <= 500 for r in rows[1:])


def test_the_serving_options_are_measured_side_by_side(compared: Finding) -> None:
    rows = compared.details["tables"][0]["rows"]
    assert [(r[0], r[1]) for r in rows] == [
        (mode, attack)
        for mode in ("probabilities", "rounded", "top1", "label")
        for attack in ("equation_solving", "line_search", "distillation")
    ]
    label_equations = rows[-3]
    assert label_equations[2:5] == ["n/a"] * 3 and "no probabilities" in label_equations[-1]


def test_the_gate_reads_the_served_output_only(compared: Finding) -> None:
    # served label-only: equation solving cannot run, but the line search recovers the linear
    # model from labels alone (Lowd & Meek 2005) and beats distillation at the same budget
    assert compared.message.startswith("line_search copies the label API")
    by_attack = compared.details["fidelity_by_attack"]
    assert set(by_attack) == {"line_search", "distillation"}
    assert compared.details["fidelity"] == by_attack["line_search"] > by_attack["distillation"]
    assert compared.verdict == "fail"
    curve = compared.details["curve"]
    assert curve["xscale"] == "log"
    labels = [s["label"] for s in curve["series"]]
    assert "distillation, label" in labels and "equation_solving, label" not in labels
    assert "line_search, label" in labels
    # rounded answers that carry no logit are re-drawn, so equation solving may pass a budget
    # by a few percent; the curve is still read at the budget (the last point within it)
    assert all(s["x"] == sorted(s["x"]) and max(s["x"]) <= 550 for s in curve["series"])
    assert "no queries (public rows, true labels)" in labels


@pytest.fixture(scope="module")
def boosted() -> Finding:
    ctx = _context("hist_gradient_boosting", {"max_iter": 50})
    params = {"max_gain": 0.05, "queries": 2000, "budgets": [100, 1000], "source": "public"}
    return run_check("extraction", params, ctx)


def test_fidelity_rises_with_the_budget_on_a_boosted_model(boosted: Finding) -> None:
    series = boosted.details["curve"]["series"][0]
    assert series["x"] == [100, 1000, 2000]
    assert series["y"][-1] > series["y"][0]
    assert boosted.queries == 2000  # fidelity is judged by the estimator: no extra queries
    # the other half of the held-out rows is the thief's public data; synthetic rows add points
    assert boosted.details["held_out_rows"] == 1000 == boosted.details["public_rows"]
    assert boosted.details["evaluated_on"] == boosted.n == 2000


def test_an_accurate_model_is_judged_on_what_queries_add_not_on_raw_agreement(
    boosted: Finding,
) -> None:
    # A thief who sends no query already agrees with an accurate model on most rows: raw
    # agreement over 0.9 failed every accurate model under the old max_fidelity: 0.9.
    assert boosted.details["no_query_fidelity"] > 0.85
    assert boosted.value == pytest.approx(
        boosted.details["fidelity"] - boosted.details["no_query_fidelity"]
    )
    assert boosted.value < 0.1 and boosted.verdict != "fail"


def test_the_headline_is_the_curve_at_the_stated_budget(boosted: Finding) -> None:
    # Not the best point of the curve at or below it: a copy at 1,000 queries that happens to
    # agree more is not what 2,000 queries buy.
    series = boosted.details["curve"]["series"][0]
    assert boosted.details["fidelity"] == series["y"][series["x"].index(2000)]
    assert f"{boosted.details['fidelity']:.4f} agreement with 2,000" in boosted.message


def test_parameters_are_validated() -> None:
    assert Extraction(max_gain=0.05, queries=700).curve_budgets() == [100, 200, 500, 700]
    with pytest.raises(ValidationError, match=r"must lie in 1\.\.queries"):
        Extraction(max_gain=0.05, queries=700, budgets=[1000])
    with pytest.raises(ValidationError, match="output"):
        Extraction.model_validate({"max_gain": 0.05, "queries": 700, "output": "hash"})
    with pytest.raises(ValidationError, match="max_fidelity was replaced by max_gain"):
        Extraction.model_validate({"max_fidelity": 0.9, "queries": 700})
