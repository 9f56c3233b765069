"""The evasion check gates on how cheaply the attacker's rows flip under the threat model."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlwarden.audit import CheckContext, run_check
from mlwarden.lineage import LineageStore
from mlwarden.pipeline import LocalExecutor, parse_spec

SPEC = """\
name: phishing-lr
data: {dataset: phishing, label: Result, positive: phishing}
split: {test_size: 0.3, seed: 1}
train: {estimator: logistic_regression, params: {max_iter: 500}, cv: 2, n_jobs: 1}
checks:
  - {check: performance_floor, metric: roc_auc, min: 0.9}
  - {check: evasion, threat_model: phishing, cost_budget: COST, max_success: 0.05, rows: 40}
register: {name: phishing-lr}
"""


def test_an_evadable_model_is_refused_by_the_gate(store: LineageStore) -> None:
    result = LocalExecutor(store).run(parse_spec(SPEC.replace("COST", "3")))
    assert result.status == "rejected"
    assert "evasion:" in (result.error or "")
    assert "flipped to 'legitimate' at cost <= 3: FAILS" in (result.error or "")


def test_rows_the_model_already_misclassifies_are_model_error_not_evasion(
    store: LineageStore,
) -> None:
    import json

    # A zero-budget attacker flips nothing. Rows the model already calls legitimate (logistic
    # regression misses about 7% of phishing rows, above the 5% bar) must not count as evasions.
    spec = SPEC.replace("COST", "0.001").replace("rows: 40", "rows: 300")
    result = LocalExecutor(store).run(parse_spec(spec))
    findings = json.loads(store.read_artifact(result.artifacts["audit.findings"]))
    evasion = next(f for f in findings if f["check"] == "evasion")
    assert evasion["value"] == 0.0 and evasion["details"]["already_target"] > 0.05 * 300
    assert evasion["n"] == 300 - evasion["details"]["already_target"]
    assert evasion["verdict"] == "pass" and evasion["interval"][1] <= 0.05
    assert result.status == "completed", result.error


def test_too_few_rows_to_decide_is_inconclusive_and_flagged(store: LineageStore) -> None:
    import json

    # Nothing flipped in 38 rows still cannot show a rate below 5% at 95% confidence.
    result = LocalExecutor(store).run(parse_spec(SPEC.replace("COST", "0.001")))
    findings = json.loads(store.read_artifact(result.artifacts["audit.findings"]))
    evasion = next(f for f in findings if f["check"] == "evasion")
    assert evasion["value"] == 0.0 and evasion["verdict"] == "inconclusive"
    assert evasion["interval"][0] == 0.0 < 0.05 < evasion["interval"][1]
    gate = json.loads(store.read_artifact(result.artifacts["gate.gate"]))
    assert result.status == "completed"  # on_inconclusive: warn (the default) registers, flagged
    assert not gate["passed"] and gate["allow_registration"] and gate["inconclusive"]
    strict = SPEC.replace("COST", "0.001") + "gate: {on_inconclusive: fail}\n"
    assert LocalExecutor(store).run(parse_spec(strict)).status == "rejected"


def test_the_finding_carries_the_success_curve(tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.ensemble import GradientBoostingClassifier

    from mlwarden import datasets
    from mlwarden.models import SklearnAdapter

    d = datasets.load("phishing")
    X, y = d.X.iloc[:3000], d.y.iloc[:3000]
    model = GradientBoostingClassifier(n_estimators=40, random_state=0).fit(X, y)
    ctx = CheckContext(SklearnAdapter(model), X, y, d.X.iloc[3000:4000], d.y.iloc[3000:4000],
                       "phishing")  # fmt: skip
    finding = run_check(
        "evasion",
        {"threat_model": "phishing", "cost_budget": 2, "max_success": 0.5, "rows": 30},
        ctx,
    )
    curve = finding.details["curve"]
    assert curve["x"][0] == 0 and curve["x"][-1] == 2
    assert curve["y"] == sorted(curve["y"])  # success never falls as the budget grows
    assert finding.queries > 0 and isinstance(pd.Series(curve["y"]).iloc[-1], float)


def test_an_unknown_threat_model_is_a_spec_error(store: LineageStore) -> None:
    from mlwarden.errors import SpecError

    ctx_spec = SPEC.replace("threat_model: phishing", "threat_model: nowhere").replace("COST", "3")
    result = LocalExecutor(store).run(parse_spec(ctx_spec))
    assert result.status == "failed" and "no bundled threat model named 'nowhere'" in (
        result.error or ""
    )
    with pytest.raises(SpecError):
        from mlwarden.attacks import bundled_threat_model

        bundled_threat_model("nowhere")


def _phishing_context(model: object) -> CheckContext:
    from mlwarden import datasets
    from mlwarden.models import SklearnAdapter

    d = datasets.load("phishing")
    X, y = d.X.iloc[:3000], d.y.iloc[:3000]
    model.fit(X, y)  # type: ignore[attr-defined]
    return CheckContext(
        SklearnAdapter(model), X, y, d.X.iloc[3000:4000], d.y.iloc[3000:4000], "phishing"
    )


def test_decision_boundary_measures_distance_with_hopskipjump() -> None:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    params = {"min_median_perturbation": 1.0, "rows": 10, "queries_per_point": 500}
    boosted = run_check(
        "decision_boundary",
        params,
        _phishing_context(GradientBoostingClassifier(n_estimators=50, random_state=0)),
    )
    linear = run_check("decision_boundary", params,
                       _phishing_context(LogisticRegression(max_iter=500)))  # fmt: skip
    assert boosted.value is not None and linear.value is not None
    assert boosted.value < 1.0 <= linear.value  # the trees' boundary lies closer to the data
    assert not boosted.passed and linear.passed
    assert boosted.queries <= 10 * 500
    medians = boosted.details["curve"]["y"]
    assert medians == sorted(medians, reverse=True)


def test_decision_boundary_needs_numeric_features() -> None:
    import pandas as pd
    from sklearn.dummy import DummyClassifier

    from mlwarden.models import SklearnAdapter

    X = pd.DataFrame({"colour": ["red", "blue"] * 10, "size": range(20)})
    y = pd.Series(["a", "b"] * 10)
    ctx = CheckContext(SklearnAdapter(DummyClassifier().fit(X, y)), X, y, X, y, "a")
    finding = run_check("decision_boundary", {"min_median_perturbation": 1.0}, ctx)
    assert not finding.passed and finding.value is None and finding.queries == 0


def test_adversarial_training_lowers_evasion_and_the_report_shows_both(
    store: LineageStore,
) -> None:
    import json

    spec = SPEC.replace("COST", "2").replace(
        "n_jobs: 1}",
        "n_jobs: 1, harden: {threat_model: phishing, cost_budget: 2, rounds: 2, rows: 120}}",
    )
    result = LocalExecutor(store).run(parse_spec(spec))
    search = json.loads(store.read_artifact(result.artifacts["train.search"]))
    hardening = search["hardening"]
    assert len(hardening["rounds"]) == 2
    assert hardening["rounds"][0]["added_rows"] > 0
    assert hardening["success_after"] < hardening["success_before"] - 0.1
    from mlwarden.pipeline import build_report
    from mlwarden.report import render_html

    html = render_html(build_report(store, parse_spec(spec), result))
    assert "Adversarial training" in html and "before hardening" in html
