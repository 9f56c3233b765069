"""Scan reports as SARIF 2.1.0, following the audit report's conventions (report/_ci.py)."""

from __future__ import annotations

from typing import Any

from mlwarden.models._scan_report import ScanReport
from mlwarden.report import SARIF_SCHEMA

__all__ = ["scan_sarif"]

_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}


def scan_sarif(reports: list[ScanReport], tool_version: str) -> dict[str, Any]:
    """Every finding of every file as one SARIF run: a rule per finding kind.

    Unsafe findings are ``error`` (critical, high) or ``warning`` (medium, "cannot check");
    the location is the file, with the archive member and byte offset when known.
    """
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for report in reports:
        for finding in report.findings:
            rules.setdefault(
                finding.rule,
                {
                    "id": finding.rule,
                    "name": finding.rule,
                    "shortDescription": {"text": f"mlwarden scan {finding.rule}"},
                },
            )
            region: dict[str, Any] = {}
            if finding.offset is not None and finding.member is None:
                region = {"byteOffset": finding.offset}
            physical: dict[str, Any] = {"artifactLocation": {"uri": report.file}}
            if region:
                physical["region"] = region
            location: dict[str, Any] = {"physicalLocation": physical}
            if finding.member:
                location["logicalLocations"] = [{"name": finding.member, "kind": "member"}]
            results.append(
                {
                    "ruleId": finding.rule,
                    "level": _LEVEL[finding.severity],
                    "kind": "fail" if finding.unsafe else "informational",
                    "message": {"text": finding.message},
                    "locations": [location],
                    "properties": {
                        "severity": finding.severity,
                        "member": finding.member,
                        "offset": finding.offset,
                        "opcode": finding.opcode,
                        "global": finding.global_name,
                        "format": report.format,
                        "verdict": report.verdict,
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
                "automationDetails": {"id": "mlwarden-scan/"},
                "results": results,
                "artifacts": [{"location": {"uri": r.file}, "length": r.size} for r in reports],
            }
        ],
    }
