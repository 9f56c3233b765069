"""Build the run report from what the run recorded in the store."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlwarden._version import __version__
from mlwarden.lineage import LineageStore
from mlwarden.pipeline._adversarial_training import CLEAN_METRICS, COST_TOLERANCE, HeldOutComparison
from mlwarden.pipeline._executor import RunResult
from mlwarden.pipeline._io import read_json
from mlwarden.pipeline._quarantine import rows_kept_out
from mlwarden.pipeline._spec import AnySpec
from mlwarden.report import CheckLine, RunReport, StepLine, write_report


def _artifact_json(store: LineageStore, result: RunResult, ref: str) -> Any:
    sha = result.artifacts.get(ref)
    return read_json(store.read_artifact(sha)) if sha else None


def _with_hardening_cost(search: dict[str, Any] | None) -> dict[str, Any] | None:
    """The search summary with the clean metrics hardening lowered named, for the report."""
    held_out = ((search or {}).get("hardening") or {}).get("held_out")
    if search is None or not held_out:
        return search
    comparison = HeldOutComparison.model_validate(held_out)
    held_out = {
        **held_out,
        "metric_names": list(CLEAN_METRICS),
        "costs": list(comparison.costs(COST_TOLERANCE)),
    }
    return {**search, "hardening": {**search["hardening"], "held_out": held_out}}


def build_report(store: LineageStore, spec: AnySpec, result: RunResult) -> RunReport:
    """Gather metrics, findings, gate, search, validation and the step lineage of one run."""
    lines = [
        StepLine(
            step=run.step,
            status=run.status,
            seconds=run.seconds,
            execution_id=run.execution_id,
            code_version=run.code_version or None,
            params=run.params,
            inputs=run.inputs,
            outputs=run.outputs,
            error=run.error,
        )
        for run in result.steps
    ]
    # An import alone has no audit: its gate checked the scan (import.findings).
    findings = (
        _artifact_json(store, result, "audit.findings")
        or _artifact_json(store, result, "import.findings")
        or []
    )
    versions = (
        store.records("model_version", subject=spec.registry.name) if result.model_version else []
    )
    head = next(
        (
            v.payload["manifest"]["lineage_head"]
            for v in versions
            if f"{v.subject}@{v.payload['manifest']['version']}" == result.model_version
        ),
        None,
    )
    return RunReport(
        pipeline=spec.name,
        description=spec.description,
        run_id=result.run_id,
        status=result.status,
        error=result.error,
        created_at=datetime.now(UTC),
        seconds=result.seconds,
        spec_sha256=result.spec_sha256,
        model_version=result.model_version,
        gate=_artifact_json(store, result, "gate.gate"),
        metrics=_artifact_json(store, result, "evaluate.metrics"),
        search=_with_hardening_cost(_artifact_json(store, result, "train.search")),
        validation=_artifact_json(store, result, "validate.report"),
        quality=_artifact_json(store, result, "validate.quality"),
        label_issues=_artifact_json(store, result, "label_errors.issues"),
        imputation=_artifact_json(store, result, "impute.imputation"),
        kept_out=[
            k.model_dump(mode="json")
            for k in rows_kept_out(
                store,
                {
                    role: result.artifacts[ref]
                    for role, ref in (
                        ("rejected", "validate.rejected"),
                        ("label_dropped", "label_errors.dropped"),
                    )
                    if ref in result.artifacts
                },
            )
        ],
        checks=[CheckLine.model_validate(f) for f in findings],
        steps=lines,
        lineage_head=head,
    )


def report_folder(store: LineageStore, result: RunResult) -> Path:
    """Where a run's report files go: ``<store>/reports/<pipeline>/<run id>/``."""
    return store.root / "reports" / result.spec_name / result.run_id


def write_run_report(
    store: LineageStore, spec: AnySpec, result: RunResult, spec_path: str | None = None
) -> tuple[RunReport, Path, Path]:
    """Build and write the report of a run; return it with its JSON and HTML paths."""
    report = build_report(store, spec, result).model_copy(update={"spec_path": spec_path})
    json_path, html_path = write_report(
        report,
        report_folder(store, result),
        figure_cache=store.root / "cache" / "figures",
        tool_version=__version__,
    )
    return report, json_path, html_path
