"""The HTML report is one self-contained page that escapes what it shows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from mlwarden.report import CheckLine, RunReport, render_html, write_report


def _report(**overrides: object) -> RunReport:
    fields: dict[str, object] = {
        "pipeline": "digits",
        "description": "ten classes",
        "run_id": "r" * 32,
        "status": "rejected",
        "error": "register: gate (fail-closed) refused the model",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "seconds": 1.5,
        "spec_sha256": "a" * 64,
        "model_version": None,
        "gate": {
            "mode": "fail-closed",
            "passed": False,
            "allow_registration": False,
            "failures": ["performance_floor: held-out f1 0.5 < 0.9"],
        },
        "metrics": {
            "n": 3,
            "classes": [0, 1, 2],
            "positive": None,
            "accuracy": 0.5,
            "precision": 0.5,
            "recall": 0.5,
            "f1": 0.5,
            "roc_auc": None,
            "confusion_matrix": [[1, 0, 0], [0, 1, 0], [1, 0, 0]],
            "roc_curve": None,
        },
        "search": None,
        "validation": None,
        "checks": [
            CheckLine(
                check="performance_floor",
                metric="test_f1",
                value=0.5,
                threshold=0.9,
                comparison=">=",
                passed=False,
                message="m",
                queries=3,
                wall_time_s=0.1,
            )
        ],
        "steps": [],
        "lineage_head": None,
    }
    fields.update(overrides)
    return RunReport.model_validate(fields)


def test_a_rejected_multiclass_run_shows_its_failure_and_no_roc_curve() -> None:
    html = render_html(_report())
    assert "rejected by the gate" in html
    assert "held-out f1 0.5 &lt; 0.9" in html
    assert html.count("data:image/png;base64,") == 2  # checks and confusion matrix
    assert "n/a" in html  # ROC AUC undefined


def test_text_from_a_spec_is_escaped() -> None:
    html = render_html(_report(description="<script>alert(1)</script>"))
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_figures_are_drawn_once_per_distinct_data(tmp_path: Path) -> None:
    cache = tmp_path / "figures"
    first = render_html(_report(), cache)
    drawn = sorted(p.name for p in cache.iterdir())
    assert len(drawn) == 2
    assert render_html(_report(run_id="s" * 32), cache).count("base64,") == first.count("base64,")
    assert sorted(p.name for p in cache.iterdir()) == drawn


def test_write_report_writes_json_and_html(tmp_path: Path) -> None:
    json_path, html_path = write_report(_report(), tmp_path / "out")
    assert RunReport.model_validate_json(json_path.read_text()).pipeline == "digits"
    assert html_path.read_text().startswith("<!doctype html>")


def test_sarif_has_a_rule_per_check_and_an_error_per_failure() -> None:
    from mlwarden.report import to_sarif

    report = _report(spec_path="pipelines/digits.yaml")
    sarif = to_sarif(report, "9.9")
    assert sarif["version"] == "2.1.0"
    (run,) = sarif["runs"]
    assert run["tool"]["driver"]["name"] == "mlwarden"
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == ["performance_floor"]
    (result,) = run["results"]
    assert result["level"] == "error" and result["kind"] == "fail"
    location = result["locations"][0]
    assert location["physicalLocation"]["artifactLocation"]["uri"] == "pipelines/digits.yaml"
    assert result["properties"]["threshold"] == 0.9


def test_junit_reports_each_check_as_a_test_case() -> None:
    import xml.etree.ElementTree as ET

    from mlwarden.report import to_junit

    suite = ET.fromstring(to_junit(_report()))
    assert suite.tag == "testsuite"
    assert (suite.get("tests"), suite.get("failures")) == ("1", "1")
    (case,) = suite.findall("testcase")
    failure = case.find("failure")
    assert failure is not None and failure.get("type") == "performance_floor"
    assert "measured 0.5" in (failure.text or "")


def test_write_report_also_writes_the_ci_formats(tmp_path: Path) -> None:
    write_report(_report(), tmp_path / "out")
    assert (tmp_path / "out" / "report.sarif").exists()
    assert (tmp_path / "out" / "report.junit.xml").read_text().startswith("<?xml")


def test_a_check_with_a_curve_gets_its_own_figure() -> None:
    curve = {"x": [0, 1, 2, 3], "y": [0.0, 0.2, 0.5, 0.7], "xlabel": "cost", "ylabel": "success"}
    check = CheckLine(check="evasion", metric="success", value=0.7, threshold=0.05,
                      comparison="<=", passed=False, message="m", queries=10, wall_time_s=0.1,
                      details={"curve": curve})  # fmt: skip
    html = render_html(_report(checks=[check]))
    assert html.count("data:image/png;base64,") == 3  # checks, curve, confusion matrix


def test_a_check_with_bars_gets_a_bar_chart() -> None:
    bars = {"labels": ["ticket", "age"], "values": [0.4, 0.1], "xlabel": "importance"}
    check = CheckLine(check="attribution_share", metric="share", value=0.8, threshold=0.5,
                      comparison="<=", passed=False, message="m", queries=10, wall_time_s=0.1,
                      details={"bars": bars})  # fmt: skip
    html = render_html(_report(checks=[check]))
    assert html.count("data:image/png;base64,") == 3  # checks, bars, confusion matrix
