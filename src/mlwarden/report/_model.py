"""The run report: one pydantic structure that the JSON file, the HTML page and the CLI read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, model_validator

REPORT_FORMAT = 1


class StepLine(BaseModel):
    """One step of the run as the report shows it."""

    step: str
    status: str
    seconds: float
    execution_id: str | None
    code_version: str | None
    params: dict[str, Any]
    inputs: dict[str, str]
    outputs: dict[str, str]
    error: str | None = None


class CheckLine(BaseModel):
    """One check of the policy with its threshold and measured value."""

    check: str
    metric: str
    value: float | None
    threshold: float
    comparison: str
    verdict: str = "fail"
    passed: bool
    n: int | None = None
    interval: tuple[float, float] | None = None
    message: str
    queries: int
    wall_time_s: float
    details: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _verdict_of_older_reports(cls, data: Any) -> Any:
        if isinstance(data, dict) and "verdict" not in data and "passed" in data:
            data = {**data, "verdict": "pass" if data["passed"] else "fail"}
        return data


class RunReport(BaseModel):
    """Everything a reader needs to judge one pipeline run and the model it made."""

    format: int = REPORT_FORMAT
    pipeline: str
    description: str
    run_id: str
    status: str
    error: str | None
    created_at: datetime
    seconds: float
    spec_sha256: str
    model_version: str | None
    gate: dict[str, Any] | None
    metrics: dict[str, Any] | None
    search: dict[str, Any] | None
    validation: dict[str, Any] | None
    quality: dict[str, Any] | None = None
    label_issues: dict[str, Any] | None = None
    imputation: dict[str, Any] | None = None
    kept_out: list[dict[str, Any]] = []
    checks: list[CheckLine]
    steps: list[StepLine]
    lineage_head: str | None
    spec_path: str | None = None
    # For ``mlwarden audit`` reports: what was audited (registered: run, spec, lineage head,
    # artifacts, signer; a model file: registered False). None for a pipeline run.
    audited: dict[str, Any] | None = None
    # SHAP on a sample of held-out rows: method, output, rows, and mean |SHAP| per input column
    # (largest first); {"error": ...} when the model could not be explained.
    explanations: dict[str, Any] | None = None
