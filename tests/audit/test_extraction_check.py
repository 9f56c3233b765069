"""The extraction check gates on how faithful a copy the budget buys, per serving option."""

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
    params = {"max_fidelity": 0.9, "queries": 500, "compare_outputs": True, "output": "label"}
    return run_check("extraction", params, logistic)


def test_a_logistic_model_serving_probabilities_is_copied_by_equation_solving(
    logistic: CheckContext,
) -> None:
    finding = run_check("extraction", {"max_fidelity": 0.9, "queries": 500}, logistic)
    assert not finding.passed
    assert finding.value is not None and finding.value >= 0.99
    assert finding.message.startswith("equation_solving copies the probabilities API")
    by_attack = finding.details["fidelity_by_attack"]
    assert set(by_attack) == {"equation_solving", "distillation"}
    assert finding.value == max(by_attack.values())
    # equation solving needs one query per unknown (d + 1 after one-hot); distillation 500
    assert 500 < finding.queries < 1000


def test_the_serving_options_are_measured_side_by_side(compared: Finding) -> None:
    rows = compared.details["tables"][0]["rows"]
    assert [(r[0], r[1]) for r in rows] == [
        (mode, attack)
        for mode in ("probabilities", "rounded", "top1", "label")
        for attack in ("equation_solving", "distillation")
    ]
    label_equations = rows[-2]
    assert label_equations[2:5] == ["n/a"] * 3 and "no probabilities" in label_equations[-1]


def test_the_gate_reads_the_served_output_only(compared: Finding) -> None:
    # served label-only: equation solving cannot run, so distillation sets the value
    assert compared.message.startswith("distillation copies the label API")
    assert compared.details["fidelity_by_attack"] == {"distillation": compared.value}
    curve = compared.details["curve"]
    assert curve["xscale"] == "log"
    labels = [s["label"] for s in curve["series"]]
    assert "distillation, label" in labels and "equation_solving, label" not in labels
    assert all(s["x"] == sorted(s["x"]) and max(s["x"]) <= 500 for s in curve["series"])


def test_fidelity_rises_with_the_budget_on_a_boosted_model() -> None:
    ctx = _context("hist_gradient_boosting", {"max_iter": 50})
    finding = run_check(
        "extraction",
        {"max_fidelity": 0.99, "queries": 2000, "budgets": [100, 2000], "source": "public"},
        ctx,
    )
    (series,) = finding.details["curve"]["series"]
    assert series["x"] == [100, 2000]
    assert series["y"][1] > series["y"][0]
    assert finding.queries == 2000  # fidelity is judged by the estimator: no extra queries
    assert finding.details["evaluated_on"] == 1000  # the other half is the thief's public data


def test_parameters_are_validated() -> None:
    assert Extraction(max_fidelity=0.9, queries=700).curve_budgets() == [100, 200, 500, 700]
    with pytest.raises(ValidationError, match=r"must lie in 1\.\.queries"):
        Extraction(max_fidelity=0.9, queries=700, budgets=[1000])
    with pytest.raises(ValidationError, match="output"):
        Extraction.model_validate({"max_fidelity": 0.9, "queries": 700, "output": "hash"})
