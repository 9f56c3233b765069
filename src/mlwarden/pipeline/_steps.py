"""The pipeline's steps: plain functions from a context (params + inputs) to output artifacts."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlwarden import data as data_layer
from mlwarden.audit import (
    CheckContext,
    Finding,
    GateResult,
    apply_gate,
    classification_metrics,
    run_check,
)
from mlwarden.data import TableSchema, infer_schema, validate_table
from mlwarden.errors import DataError, GateRejectedError
from mlwarden.lineage import Appender
from mlwarden.models import MEDIA_TYPE, Manifest, SklearnAdapter, dumps_model, loads_model
from mlwarden.pipeline._context import Output, StepContext
from mlwarden.pipeline._io import CSV, JSON, PARQUET, json_bytes, table_bytes

if TYPE_CHECKING:
    import pandas as pd

Outputs = dict[str, Output]


def _label_parts(frame: pd.DataFrame, label: str) -> tuple[pd.DataFrame, pd.Series]:
    return frame.drop(columns=[label]), frame[label]


def _require_label(frame: pd.DataFrame, label: str) -> None:
    if label not in frame.columns:
        raise DataError(
            f"label column {label!r} is not in the table; its columns are {list(frame.columns)}"
        )


def ingest(ctx: StepContext) -> Outputs:
    """Read the source table and fix its schema: the bundled one, a given file, or inferred."""
    p = ctx.params
    label = p["label"]
    if p.get("dataset"):
        dataset = data_layer.load(p["dataset"])
        frame, schema = dataset.frame, dataset.schema
        label = label or dataset.label
        positive = p["positive"] if p["positive"] is not None else dataset.positive
        if label != dataset.label:
            schema = schema.model_copy(update={"label": label})
    else:
        import pandas as pd

        ctx.progress(f"reading {p['path']}")
        try:
            frame = pd.read_csv(io.BytesIO(ctx.input("source")))
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"{p['path']} is not a readable CSV table: {exc}") from exc
        positive = p["positive"]
        _require_label(frame, label)
        schema = (
            TableSchema.model_validate(ctx.json("schema"))
            if p["has_schema"]
            else infer_schema(frame, label=label)
        )
        schema = schema.model_copy(update={"label": label})
    _require_label(frame, label)
    if label not in schema.columns:
        raise DataError(f"label column {label!r} is not in the schema")
    if positive is not None and positive not in set(frame[label].dropna()):
        raise DataError(
            f"positive class {positive!r} never occurs in label column {label!r}; "
            f"its values are {sorted(map(str, frame[label].dropna().unique()))[:20]}"
        )
    ctx.progress(f"{len(frame):,} rows x {frame.shape[1]} columns")
    info = {
        "label": label,
        "positive": positive,
        "rows": len(frame),
        "columns": list(frame.columns),
    }
    return {
        "raw": Output(table_bytes(frame), PARQUET, "raw.parquet"),
        "schema": Output(json_bytes(schema), JSON, "schema.json"),
        "info": Output(json_bytes(info), JSON, "info.json"),
    }


def validate(ctx: StepContext) -> Outputs:
    """Check the raw table against its schema; rejected rows are kept with their reasons."""
    schema = TableSchema.model_validate(ctx.json("schema"))
    accepted, rejected, report = validate_table(ctx.table("raw"), schema)
    outputs = {
        "clean": Output(table_bytes(accepted), PARQUET, "clean.parquet"),
        "rejected": Output(rejected.to_csv(index=False).encode("utf-8"), CSV, "rejected.csv"),
        "report": Output(json_bytes(report), JSON, "validation.json"),
    }
    ctx.progress(f"{report.rows_accepted:,} rows accepted, {report.rows_rejected:,} rejected")
    limit = ctx.params["max_rejected_fraction"]
    if report.rejected_fraction > limit:
        for role, output in outputs.items():
            ctx.keep(role, output)
        worst = ", ".join(f"{i.column} {i.rule} ({i.count})" for i in report.issues[:5])
        raise DataError(
            f"validation rejected {report.rows_rejected} of {report.rows_in} rows "
            f"({report.rejected_fraction:.1%}, policy allows {limit:.1%}): {worst}. "
            "The rejected rows and their reasons are kept in the store as rejected.csv."
        )
    return outputs


def split(ctx: StepContext) -> Outputs:
    """Stratified, seeded held-out split."""
    from sklearn.model_selection import train_test_split

    frame = ctx.table("clean")
    label = ctx.json("info")["label"]
    counts = frame[label].value_counts()
    if len(counts) < 2:
        raise DataError(
            f"label {label!r} has a single class {list(counts.index)}: nothing to learn"
        )
    if counts.min() < 2:
        raise DataError(
            f"class {counts.idxmin()!r} of {label!r} has {counts.min()} row; "
            "a stratified split needs at least 2 rows per class"
        )
    train, test = train_test_split(
        frame,
        test_size=ctx.params["test_size"],
        random_state=ctx.params["seed"],
        stratify=frame[label],
    )
    ctx.progress(f"{len(train):,} train rows, {len(test):,} test rows")
    return {
        "train": Output(table_bytes(train.reset_index(drop=True)), PARQUET, "train.parquet"),
        "test": Output(table_bytes(test.reset_index(drop=True)), PARQUET, "test.parquet"),
    }


def _scoring(name: str, n_classes: int) -> str:
    if n_classes > 2 and name in ("roc_auc", "f1"):
        return {"roc_auc": "roc_auc_ovr", "f1": "f1_macro"}[name]
    return name


def train(ctx: StepContext) -> Outputs:
    """Grid search with stratified cross-validation; refit the best on all training rows."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from mlwarden.pipeline._estimators import MODEL_STEP, build_estimator

    p = ctx.params
    schema = TableSchema.model_validate(ctx.json("schema"))
    X, y = _label_parts(ctx.table("train"), ctx.json("info")["label"])
    pipeline = build_estimator(p["estimator"], p["params"], schema, p["seed"])
    grid = {f"{MODEL_STEP}__{k}": v for k, v in p["grid"].items()}
    candidates = math.prod(len(v) for v in grid.values())
    scoring = _scoring(p["scoring"], y.nunique())
    ctx.progress(
        f"{p['estimator']}: {candidates} candidate(s) x {p['cv']} folds "
        f"= {candidates * p['cv']} fits on {p['n_jobs']} core(s), scoring {scoring}"
    )
    search = GridSearchCV(
        pipeline,
        grid,
        scoring=scoring,
        cv=StratifiedKFold(n_splits=p["cv"], shuffle=True, random_state=p["seed"]),
        n_jobs=p["n_jobs"],
        refit=True,
        error_score="raise",
    )
    search.fit(X, y)
    results = search.cv_results_
    table = [
        {
            "params": {k.removeprefix(f"{MODEL_STEP}__"): v for k, v in params.items()},
            "mean_score": float(results["mean_test_score"][i]),
            "std_score": float(results["std_test_score"][i]),
            "rank": int(results["rank_test_score"][i]),
        }
        for i, params in enumerate(results["params"])
    ]
    summary = {
        "estimator": p["estimator"],
        "scoring": scoring,
        "best_params": {
            k.removeprefix(f"{MODEL_STEP}__"): v for k, v in search.best_params_.items()
        },
        "best_score": float(search.best_score_),
        "candidates": table,
    }
    ctx.progress(f"best {scoring} {search.best_score_:.4f} with {summary['best_params']}")
    return {
        "model": Output(dumps_model(search.best_estimator_), MEDIA_TYPE, "model.skops"),
        "search": Output(json_bytes(summary), JSON, "search.json"),
    }


def _adapter(ctx: StepContext) -> SklearnAdapter:
    return SklearnAdapter(loads_model(ctx.input("model")))


def evaluate(ctx: StepContext) -> Outputs:
    """Precision, recall, F1, ROC AUC and the confusion matrix on the held-out split."""
    info = ctx.json("info")
    model = _adapter(ctx)
    X, y = _label_parts(ctx.table("test"), info["label"])
    scores = classification_metrics(y, model.predict_proba(X), model.classes_, info["positive"])
    ctx.progress(f"held-out F1 {scores.f1:.4f}, ROC AUC {scores.roc_auc:.4f}")
    return {"metrics": Output(json_bytes(scores), JSON, "metrics.json")}


def audit(ctx: StepContext) -> Outputs:
    """Run every check the policy lists, through the one check registry."""
    info = ctx.json("info")
    model = _adapter(ctx)
    X_train, y_train = _label_parts(ctx.table("train"), info["label"])
    X_test, y_test = _label_parts(ctx.table("test"), info["label"])
    check_ctx = CheckContext(model, X_train, y_train, X_test, y_test, info["positive"])
    findings: list[Finding] = []
    for spec in ctx.params["checks"]:
        params = {k: v for k, v in spec.items() if k != "check"}
        finding = run_check(spec["check"], params, check_ctx)
        ctx.progress(f"{finding.check}: {'pass' if finding.passed else 'FAIL'} ({finding.message})")
        findings.append(finding)
    return {
        "findings": Output(
            json_bytes([f.model_dump(mode="json") for f in findings]), JSON, "findings.json"
        )
    }


def gate(ctx: StepContext) -> Outputs:
    """Apply the policy's gate mode to the findings."""
    findings = [Finding.model_validate(f) for f in ctx.json("findings")]
    result = apply_gate(findings, ctx.params["mode"])
    ctx.progress(result.summary())
    return {"gate": Output(json_bytes(result), JSON, "gate.json")}


def register(ctx: StepContext) -> Outputs:
    """Sign a manifest of the model and its lineage, and append it as a new model version.

    Fail-closed: a model the gate did not pass is refused and nothing is registered.
    """
    result = GateResult.model_validate(ctx.json("gate"))
    if not result.allow_registration:
        raise GateRejectedError(
            f"gate ({result.mode}) refused the model, not registered: {result.summary()}"
        )
    name = ctx.params["name"]
    signer = ctx.run["signer"]()
    model_sha = ctx.run["input_sha"]["model"]
    artifacts = {r: s for r, s in ctx.run["input_sha"].items() if r != "model"}
    metrics = ctx.json("metrics")
    created = datetime.now(UTC)

    def build(tx: Appender) -> tuple[str, str, dict[str, Any]]:
        manifest = Manifest(
            name=name,
            version=tx.count("model_version", name) + 1,
            model_sha256=model_sha,
            model_media_type=MEDIA_TYPE,
            artifacts=artifacts,
            metrics={k: metrics[k] for k in ("accuracy", "precision", "recall", "f1", "roc_auc")},
            gate=result.model_dump(mode="json"),
            lineage_head=tx.head,
            spec_sha256=ctx.run["spec_sha256"],
            run_id=ctx.run["run_id"],
            signer=signer.public_key_hex,
            created_at=created,
        )
        signature = signer.sign(manifest.message())
        payload = {"manifest": manifest.model_dump(mode="json"), "signature": signature}
        return "model_version", name, payload

    ctx.emit(build)
    flag = "" if result.passed else " (flagged: gate mode warn let failing checks through)"
    ctx.progress(f"registering {name}{flag}")
    return {}
