"""``mlwarden audit`` from outside: default groups, verdicts with intervals, clear refusals."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.cli.test_cli import mlwarden as _mlwarden
from tests.conftest import FAST_SPEC


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose store holds german@1 (logistic regression on German Credit)."""
    folder = tmp_path_factory.mktemp("audit")
    (folder / "spec.yaml").write_text(FAST_SPEC)
    result = _mlwarden("run", "spec.yaml", "--store", "store", cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr
    return folder


@pytest.fixture(scope="module")
def default_audit(registered: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = registered / "default-audit"
    # 80 columns, as a terminal: long report paths used to wrap mid-word
    result = _mlwarden(
        "audit", "--model", "german@1", "--store", "store", "--out", str(out),
        cwd=registered, columns=80,
    )  # fmt: skip
    return result, out


def test_the_default_groups_give_verdicts_with_their_sample_size(
    default_audit: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, out = default_audit
    assert result.returncode == 0, result.stdout + result.stderr  # nothing fails; 300 rows
    report = json.loads((out / "report.json").read_text())
    checks = {c["check"]: c for c in report["checks"]}
    assert set(checks) == {
        "performance_floor", "generalization_gap", "attribution_share", "ood_confidence"
    }  # fmt: skip
    for check in checks.values():
        assert check["verdict"] in ("pass", "inconclusive") and check["n"] > 0
    assert checks["performance_floor"]["interval"][0] < checks["performance_floor"]["value"]
    assert "INCONCLUSIVE" in result.stdout or "all checks passed" in result.stdout


def test_report_paths_are_printed_whole(
    default_audit: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, out = default_audit
    assert f"report: {out / 'report.html'}" in result.stdout.splitlines()


def test_an_audit_report_of_a_registered_model_says_what_was_audited(
    default_audit: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _, out = default_audit
    html = (out / "report.html").read_text()
    assert "Audited model: <b>german@1</b>" in html and "registered; signature verified" in html
    assert "not registered" not in html and "An audit reads the store" in html
    report = json.loads((out / "report.json").read_text())
    assert report["audited"]["registered"] and set(report["audited"]["artifacts"]) >= {
        "train", "test"
    }  # fmt: skip


def test_evasion_on_foreign_columns_asks_for_a_threat_model_in_one_line(registered: Path) -> None:
    result = _mlwarden(
        "audit", "--model", "german@1", "--store", "store", "--checks", "evasion",
        cwd=registered,
    )  # fmt: skip
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "evasion needs a threat model for these columns" in lines[0]
    assert "mlwarden threat-model init DATA --label credit" in lines[0]
    assert "having_IPhaving_IP_Address" not in result.stderr  # no list of phishing columns


def test_an_inconclusive_check_fails_the_audit_when_asked(registered: Path) -> None:
    result = _mlwarden(
        "audit", "--model", "german@1", "--store", "store", "--checks", "membership",
        "--on-inconclusive", "fail", "--out", "strict", cwd=registered,
    )  # fmt: skip
    # 150 non-members cannot show a TPR at 1% FPR below the limit: inconclusive, here a failure
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((registered / "strict" / "report.json").read_text())
    (membership,) = report["checks"]
    assert membership["verdict"] == "inconclusive" and membership["n"] == 150
    assert "needs at least 1,000 non-members" in membership["message"]
    assert report["gate"]["on_inconclusive"] == "fail"
    junit = (registered / "strict" / "report.junit.xml").read_text()
    assert "<skipped" in junit


def test_a_policy_names_its_threat_model_relative_to_its_own_folder(tmp_path: Path) -> None:
    from importlib import resources

    from sklearn.tree import DecisionTreeClassifier

    from mlwarden import datasets
    from mlwarden.models import dumps_model

    d = datasets.load("phishing")
    model = tmp_path / "tree.skops"
    model.write_bytes(dumps_model(DecisionTreeClassifier(max_depth=4).fit(d.X, d.y)))
    policies = tmp_path / "policies"
    policies.mkdir()
    threat = resources.files("mlwarden").joinpath("_specs", "phishing_threat_model.yaml")
    (policies / "threat.yaml").write_text(threat.read_text())
    (policies / "policy.yaml").write_text(
        "checks:\n  - {check: evasion, threat_model: threat.yaml, cost_budget: 1,"
        " max_success: 1.0, rows: 20}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _mlwarden(
        "audit", "--model", str(model), "--data", "phishing", "--label", "Result",
        "--policy", str(policies / "policy.yaml"), "--out", "out", cwd=elsewhere,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pass evasion" in result.stdout
