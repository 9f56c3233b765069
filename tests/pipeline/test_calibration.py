"""The calibration table's rows: default checks on healthy baselines and planted weaknesses.

Each row of the README's calibration table (``bench/calibration.py``) that this file pins runs
the default check group, as ``mlwarden audit --checks GROUP`` does, on German Credit (small
enough to fit every model in seconds). Healthy models must not fail; each planted weakness
must fail the check made for it.
"""

from __future__ import annotations

from functools import cache

import pytest

from mlwarden.audit import CHECK_GROUPS, CheckContext, Finding
from mlwarden.pipeline._calibration import (
    WEAKNESSES,
    calibration_model,
    calibration_split,
    run_group,
)

DATASET = "german"


@cache
def _context(model: str) -> CheckContext:
    return calibration_model(model, calibration_split(DATASET))


@cache
def _finding(model: str, group: str) -> Finding:
    return run_group(group, _context(model), DATASET)


HEALTHY = ("logistic_regression", "gradient_boosting")
CHEAP_GROUPS = ("performance", "generalization", "shortcuts", "ood", "membership")


@pytest.mark.parametrize("group", CHEAP_GROUPS)
@pytest.mark.parametrize("model", HEALTHY)
def test_a_healthy_model_never_fails_a_default_check(model: str, group: str) -> None:
    finding = _finding(model, group)
    assert finding.verdict in ("pass", "inconclusive"), finding.message
    assert finding.n is not None and finding.n > 0


# The evadable booster needs the phishing threat model: tests/audit/test_evasion_check.py pins
# an evadable model refused by the gate.
@pytest.mark.parametrize(
    ("model", "group"), sorted((m, g) for m, g in WEAKNESSES.items() if g != "evasion")
)
def test_a_planted_weakness_fails_the_check_made_for_it(model: str, group: str) -> None:
    finding = _finding(model, group)
    assert finding.verdict == "fail", finding.message


def test_a_boosted_model_gives_away_less_than_the_limit_to_a_thief() -> None:
    finding = _finding("gradient_boosting", "extraction")
    assert finding.verdict != "fail", finding.message
    assert finding.details["no_query_fidelity"] > 0.7


def test_a_logistic_model_serving_probabilities_fails_extraction_for_a_real_reason() -> None:
    # The one healthy failure in the table, and a real weakness: equation solving (Tramer et
    # al. 2016) recovers a logistic model exactly from its probabilities with d + 1 queries.
    finding = _finding("logistic_regression", "extraction")
    assert finding.verdict == "fail"
    assert finding.details["fidelity_by_attack"]["equation_solving"] == 1.0
    served = finding.details["tables"][0]["rows"][0]  # probabilities, equation solving
    assert served[:2] == ["probabilities", "equation_solving"] and served[2] < 100


def test_the_groups_are_the_ones_the_cli_runs() -> None:
    assert set(CHECK_GROUPS) == {
        "performance", "generalization", "evasion", "shortcuts", "ood", "membership",
        "extraction",
    }  # fmt: skip
    assert set(WEAKNESSES.values()) <= set(CHECK_GROUPS)
