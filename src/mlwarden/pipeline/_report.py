"""Build the run report from what the run recorded in the store."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlwarden._version import __version__
from mlwarden.audit import Explainer
from mlwarden.errors import MlwardenError
from mlwarden.lineage import LineageStore
from mlwarden.pipeline._adversarial_training import CLEAN_METRICS, COST_TOLERANCE, HeldOutComparison
from mlwarden.pipeline._executor import RunResult
from mlwarden.pipeline._io import label_parts, read_json, read_table
from mlwarden.pipeline._quarantine import rows_kept_out
from mlwarden.pipeline._spec import AnySpec
from mlwarden.pipeline._steps import model_adapter
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


#: Held-out rows explained for the report (the permutation explainer, far costlier, takes
#: fewer), and the seconds beyond which fewer are explained (deep forests cost ~50 ms a row).
EXPLAIN_ROWS, EXPLAIN_ROWS_AGNOSTIC, EXPLAIN_SECONDS = 200, 40, 3.0


def explain_held_out(
    store: LineageStore, result: RunResult, seed: int = 0
) -> dict[str, Any] | None:
    """Mean |SHAP| per input column on a bounded sample of the held-out rows (global view).

    At most ``EXPLAIN_ROWS`` rows, fewer when the first 20 show that more would take over
    ``EXPLAIN_SECONDS``. Read from what the evaluate step used (model, splits), with a seeded
    sample. None when the run has no evaluated model; ``error`` when it cannot be explained.
    """
    from mlwarden.models import fitted_columns

    run = next((s for s in result.steps if s.step == "evaluate" and s.inputs), None)
    if run is None or run.status not in ("executed", "cached"):
        return None
    try:
        info = read_json(store.read_artifact(run.inputs["info"]))
        X_test = label_parts(read_table(store.read_artifact(run.inputs["test"])), info["label"])[0]
        X_train = label_parts(read_table(store.read_artifact(run.inputs["train"])), info["label"])
        imported = run.inputs.get("imported")
        model = model_adapter(
            store.read_artifact(run.inputs["model"]),
            read_json(store.read_artifact(imported)) if imported else None,
            [str(c) for c in X_test.columns],
        )
        X_test, background = fitted_columns(model, X_test), fitted_columns(model, X_train[0])
        explainer = Explainer(model, background, info.get("positive"), seed=seed)
        rows = EXPLAIN_ROWS if explainer.method != "permutation" else EXPLAIN_ROWS_AGNOSTIC
        sample = X_test.sample(n=min(rows, len(X_test)), random_state=seed)
        started = time.perf_counter()
        found = explainer.explain(sample.iloc[:20])
        per_row = (time.perf_counter() - started) / len(found.values)
        more = min(len(sample), max(20, int(EXPLAIN_SECONDS / max(per_row, 1e-9))))
        if more > 20:
            rest = explainer.explain(sample.iloc[20:more])
            found = found.model_copy(update={"values": found.values + rest.values})
            sample = sample.iloc[:more]
        else:
            sample = sample.iloc[:20]
    except MlwardenError as exc:
        return {"error": str(exc)}
    return {
        "method": found.method,
        "output": found.output,
        "explained_class": found.explained_class,
        "rows": len(sample),
        "base_value": found.base_value,
        "mean_abs": [{"feature": f, "value": v} for f, v in found.mean_abs()],
    }


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
        explanations=explain_held_out(store, result),
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
