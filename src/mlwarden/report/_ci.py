"""Findings for CI systems: SARIF 2.1.0 (code-scanning views) and JUnit XML (test views)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from mlwarden.report._model import RunReport

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVEL = {"pass": "note", "inconclusive": "warning"}
_SARIF_KIND = {"pass": "pass", "inconclusive": "review"}


def _value(check: Any) -> str:
    return "n/a" if check.value is None else f"{check.value:.6g}"


def to_sarif(report: RunReport, tool_version: str) -> dict[str, Any]:
    """The run's checks as one SARIF run: a rule per check, a result per finding.

    Failed checks are ``error`` results, inconclusive ones ``warning`` (kind ``review``: too few
    points to decide) and passed ones ``note``, so a viewer can show all three;
    the result's location is the spec file when known, and always the pipeline or model by name.
    """
    rules: dict[str, dict[str, Any]] = {}
    results = []
    where = report.model_version or report.pipeline
    for check in report.checks:
        rules.setdefault(
            check.check,
            {
                "id": check.check,
                "name": check.check,
                "shortDescription": {"text": f"mlwarden check {check.check}"},
            },
        )
        location: dict[str, Any] = {
            "logicalLocations": [{"name": where, "kind": "module"}],
        }
        if report.spec_path:
            location["physicalLocation"] = {"artifactLocation": {"uri": report.spec_path}}
        results.append(
            {
                "ruleId": check.check,
                "level": _SARIF_LEVEL.get(check.verdict, "error"),
                "kind": _SARIF_KIND.get(check.verdict, "fail"),
                "message": {"text": check.message},
                "locations": [location],
                "properties": {
                    "metric": check.metric,
                    "value": check.value,
                    "threshold": check.threshold,
                    "comparison": check.comparison,
                    "verdict": check.verdict,
                    "n": check.n,
                    "interval": list(check.interval) if check.interval else None,
                    "queries": check.queries,
                },
            }
        )
    return {
        "version": "2.1.0",
        "$schema": SARIF_SCHEMA,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "mlwarden",
                        "version": tool_version,
                        "rules": list(rules.values()),
                    }
                },
                "automationDetails": {"id": f"{report.pipeline}/{report.run_id}"},
                "results": results,
            }
        ],
    }


def to_junit(report: RunReport) -> str:
    """The run's checks as a JUnit test suite: one test case per check, failures as failures,
    inconclusive checks as skipped (with the reason), passes as passes."""
    failures = sum(c.verdict == "fail" for c in report.checks)
    suite = ET.Element(
        "testsuite",
        name=f"mlwarden.{report.pipeline}",
        tests=str(len(report.checks)),
        failures=str(failures),
        errors="0",
        skipped=str(sum(c.verdict == "inconclusive" for c in report.checks)),
        time=f"{sum(c.wall_time_s for c in report.checks):.3f}",
    )
    for check in report.checks:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"mlwarden.{report.pipeline}.{check.check}",
            name=f"{check.metric} {check.comparison} {check.threshold:g}",
            time=f"{check.wall_time_s:.3f}",
        )
        if check.verdict == "inconclusive":
            ET.SubElement(case, "skipped", message=f"inconclusive: {check.message}")
        elif not check.passed:
            failure = ET.SubElement(case, "failure", message=check.message, type=check.check)
            failure.text = (
                f"measured {_value(check)}, threshold {check.comparison} {check.threshold:g}, "
                f"{check.queries} queries"
            )
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode")
