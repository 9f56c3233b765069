"""Checks measure the model themselves, compare to thresholds, and the gate applies the mode."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.tree import DecisionTreeClassifier

from mlwarden import datasets
from mlwarden.audit import CHECKS, CheckContext, Finding, apply_gate, run_check
from mlwarden.models import SklearnAdapter


def _context(estimator: object) -> CheckContext:
    d = datasets.load("german")
    X = pd.get_dummies(d.X).astype(float)
    train, test = X.index < 700, X.index >= 700
    estimator.fit(X[train], d.y[train])  # type: ignore[attr-defined]
    return CheckContext(SklearnAdapter(estimator), X[train], d.y[train], X[test], d.y[test], "bad")


def test_the_registry_holds_the_shipped_checks() -> None:
    assert {"performance_floor", "generalization_gap"} <= set(CHECKS)


def test_performance_floor_fails_a_model_that_predicts_the_majority() -> None:
    finding = run_check(
        "performance_floor",
        {"metric": "f1", "min": 0.3},
        _context(DummyClassifier(strategy="most_frequent")),
    )
    assert not finding.passed
    assert finding.value == 0.0  # never predicts 'bad'
    assert finding.queries == 300


def test_performance_floor_passes_a_model_above_the_floor() -> None:
    ctx = _context(DecisionTreeClassifier(max_depth=3, random_state=0))
    finding = run_check("performance_floor", {"metric": "roc_auc", "min": 0.6}, ctx)
    assert finding.passed and finding.value >= 0.6
    assert finding.comparison == ">=" and finding.threshold == 0.6


def test_generalization_gap_fails_a_memorising_tree() -> None:
    ctx = _context(DecisionTreeClassifier(random_state=0))  # unbounded depth: 100% on train
    finding = run_check("generalization_gap", {"metric": "accuracy", "max_gap": 0.1}, ctx)
    assert finding.details["train"] == 1.0
    assert not finding.passed
    assert finding.queries == 1_000


def _finding(passed: bool) -> Finding:
    return Finding(
        check="c",
        metric="m",
        value=1.0,
        threshold=0.5,
        comparison=">=",
        passed=passed,
        message="msg",
        queries=0,
        wall_time_s=0.0,
    )


@pytest.mark.parametrize(
    ("mode", "passed", "allowed"),
    [("fail-closed", True, True), ("fail-closed", False, False), ("warn", False, True)],
)
def test_the_gate_modes(mode: str, passed: bool, allowed: bool) -> None:
    result = apply_gate([_finding(True), _finding(passed)], mode)  # type: ignore[arg-type]
    assert result.passed is passed
    assert result.allow_registration is allowed


def test_a_gate_with_no_findings_fails_closed() -> None:
    result = apply_gate([], "fail-closed")
    assert not result.allow_registration
    assert "no checks ran" in result.summary()
