"""Adversarial training says what it bought and what it cost, on the same held-out rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlwarden.lineage import LineageStore
from mlwarden.pipeline import LocalExecutor, RunResult, parse_spec
from mlwarden.pipeline._adversarial_training import HeldOutComparison, HeldOutEvasion
from tests.conftest import FAST_SPEC

# The fast German Credit pipeline, gated on evasion under a threat model drafted from its data.
EVASION = "  - {check: evasion, threat_model: THREAT, cost_budget: 1, max_success: 0.3}\n"
HARDEN = "  harden: {threat_model: THREAT, cost_budget: 1, rounds: 2, rows: 80}\n"


class Runs:
    """The same pipeline run without and with hardening, in one store."""

    def __init__(self, store: LineageStore, plain: RunResult, hardened: RunResult) -> None:
        self.store, self.plain, self.hardened = store, plain, hardened

    def json(self, result: RunResult, ref: str) -> Any:
        return json.loads(self.store.read_artifact(result.artifacts[ref]))

    def evasion(self, result: RunResult) -> dict[str, Any]:
        return next(f for f in self.json(result, "audit.findings") if f["check"] == "evasion")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    from mlwarden import datasets
    from mlwarden.attacks import draft_threat_model_yaml

    folder = tmp_path_factory.mktemp("harden")
    threat = folder / "german_threat.yaml"
    threat.write_text(draft_threat_model_yaml(datasets.load("german").frame, "credit"))
    plain = FAST_SPEC.replace("checks:\n", "checks:\n" + EVASION).replace("THREAT", str(threat))
    hardened = plain.replace(
        "  n_jobs: 1\n", "  n_jobs: 1\n" + HARDEN.replace("THREAT", str(threat))
    )
    store = LineageStore(folder / "store")
    # Gate warn: both runs go to the end whatever the evasion check says.
    spec_plain = parse_spec(plain.replace("mode: fail-closed", "mode: warn"))
    spec_hardened = parse_spec(hardened.replace("mode: fail-closed", "mode: warn"))
    return Runs(
        store, LocalExecutor(store).run(spec_plain), LocalExecutor(store).run(spec_hardened)
    )


def _held_out(runs: Runs) -> HeldOutComparison:
    search = runs.json(runs.hardened, "train.search")
    return HeldOutComparison.model_validate(search["hardening"]["held_out"])


def test_clean_metrics_before_and_after_are_on_the_same_held_out_rows(runs: Runs) -> None:
    held_out = _held_out(runs)
    plain = runs.json(runs.plain, "evaluate.metrics")
    hardened = runs.json(runs.hardened, "evaluate.metrics")
    assert held_out.rows == plain["n"] == hardened["n"] == 300
    for name, before in held_out.metrics_before.items():
        # Before: the model the same grid search makes without hardening, evaluated as usual;
        # after: the model the hardened run ships, evaluated as usual.
        assert before == pytest.approx(plain[name]), name
        assert held_out.metrics_after[name] == pytest.approx(hardened[name]), name
    assert held_out.metrics_before != held_out.metrics_after


def test_evasion_before_and_after_is_what_the_evasion_check_measures(runs: Runs) -> None:
    held_out = _held_out(runs)
    for figure, result in ((held_out.evasion_before, runs.plain), (held_out.evasion_after,
                                                                   runs.hardened)):  # fmt: skip
        finding = runs.evasion(result)
        assert figure.success == pytest.approx(finding["value"])
        assert (figure.flipped, figure.attacked) == (
            finding["details"]["flipped"],
            finding["details"]["attacked"],
        )
        assert figure.already_target == finding["details"]["already_target"]
        assert figure.interval == pytest.approx(finding["interval"])
    assert held_out.evasion_after.success is not None and held_out.evasion_before.success
    assert held_out.evasion_after.success < held_out.evasion_before.success


def test_training_rounds_count_flips_of_correctly_classified_rows_only(runs: Runs) -> None:
    hardening = runs.json(runs.hardened, "train.search")["hardening"]
    first = hardening["rounds"][0]
    assert first["attacked"] + first["already_target"] == 80
    assert first["already_target"] > 0  # the linear model misses some bad risks outright
    assert first["success"] == pytest.approx(first["evaded"] / first["attacked"])
    assert hardening["success_before"] == pytest.approx(first["success"])


def test_the_report_puts_before_and_after_side_by_side_and_names_the_cost(runs: Runs) -> None:
    from mlwarden.pipeline import build_report
    from mlwarden.report import render_html

    held_out = _held_out(runs)
    spec = parse_spec(FAST_SPEC)  # the report reads the run's artifacts; the spec names it
    html = render_html(build_report(runs.store, spec, runs.hardened))
    assert "before hardening</th><th>after hardening</th>" in html
    after = held_out.metrics_after["accuracy"]
    before = held_out.metrics_before["accuracy"]
    assert before is not None and after is not None
    assert f"{before:.4f}" in html and f"{after:.4f}" in html
    lowered = held_out.costs(0.001)
    assert lowered  # hardening this model lowers some clean metric, and the report says which
    assert "hardening lowered clean " + ", ".join(lowered) in html


def test_costs_name_only_the_metrics_that_dropped() -> None:
    figure = HeldOutEvasion(success=0.5, flipped=1, attacked=2, already_target=0, interval=None)
    comparison = HeldOutComparison(
        rows=10,
        metrics_before={"accuracy": 0.9, "precision": 0.8, "recall": 0.5, "f1": None},
        metrics_after={"accuracy": 0.8995, "precision": 0.7, "recall": 0.6, "f1": 0.6},
        evasion_before=figure,
        evasion_after=figure,
    )
    assert comparison.costs() == {"accuracy": (0.9, 0.8995), "precision": (0.8, 0.7)}
    assert comparison.costs(0.001) == {"precision": (0.8, 0.7)}


def bundled_threat_model_text() -> str:
    from importlib import resources

    return resources.files("mlwarden").joinpath("_specs", "phishing_threat_model.yaml").read_text()


def test_held_out_rows_are_only_read_when_hardening(tmp_path: Path) -> None:
    from mlwarden.pipeline._dag import build_steps

    plain = parse_spec(FAST_SPEC)
    steps = {s.name: s for s in build_steps(plain)[0]}
    assert "test" not in steps["train"].inputs
    (tmp_path / "t.yaml").write_text(bundled_threat_model_text())
    hardened = parse_spec(FAST_SPEC.replace("  n_jobs: 1\n", "  n_jobs: 1\n" + HARDEN).replace(
        "THREAT", str(tmp_path / "t.yaml")))  # fmt: skip
    assert {s.name: s for s in build_steps(hardened)[0]}["train"].inputs["test"] == "split.test"
