"""The model steps: train, evaluate, audit, gate and register."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from mlwarden.audit import (
    CheckContext,
    Finding,
    GateResult,
    apply_gate,
    classification_metrics,
    run_check,
)
from mlwarden.data import TableSchema
from mlwarden.errors import DataError, GateRejectedError
from mlwarden.models import (
    MEDIA_TYPE,
    ModelAdapter,
    SklearnAdapter,
    adapter_for,
    dumps_model,
    fitted_columns,
    loads_model,
    version_record,
)
from mlwarden.pipeline._context import Output, StepContext
from mlwarden.pipeline._io import JSON, Outputs, json_bytes, label_parts

if TYPE_CHECKING:
    import pandas as pd


def _scoring(name: str, n_classes: int) -> str:
    if n_classes > 2 and name in ("roc_auc", "f1"):
        return {"roc_auc": "roc_auc_ovr", "f1": "f1_macro"}[name]
    return name


def _require_observed_features(ctx: StepContext, X: pd.DataFrame, folds: list[Any]) -> None:
    """Refuse training rows in which no feature has a value, whole or in a search fold.

    Imputation drops a column without a single observed value, so such a column is never
    used; when every column is like that, in the training split or in the training part of
    one cross-validation fold, nothing is left to learn from. Empty columns are named.
    """
    observed = X.notna()
    counts = observed.sum()
    sparse = ", ".join(f"{c} ({int(counts[c])})" for c in counts.sort_values().index[:5])
    parts = [("training rows", observed.index)] + [
        (f"training part of search fold {i}", X.index[fit]) for i, (fit, _) in enumerate(folds, 1)
    ]
    for where, rows in parts:
        if not observed.loc[rows].to_numpy().any():
            raise DataError(
                f"no feature has a value in the {len(rows):,} {where} (observed values per "
                f"column in the {len(X):,} training rows: {sparse}): expected at least one "
                "column with observed values; check the table or its missing-value policy "
                "(data.missing)"
            )
    empty = [str(c) for c in X.columns if counts[c] == 0]
    if empty:
        ctx.progress(f"no value in the training rows, so the model cannot use: {empty[:5]}")


def train(ctx: StepContext) -> Outputs:
    """Grid search with stratified cross-validation; refit the best on all training rows."""
    from sklearn.model_selection import StratifiedKFold

    from mlwarden.pipeline._estimators import MODEL_STEP, build_estimator
    from mlwarden.pipeline._search import grid_search
    from mlwarden.pipeline._workers import workers_die_with_this_process

    p = ctx.params
    schema = TableSchema.model_validate(ctx.json("schema"))
    X, y = label_parts(ctx.table("train"), ctx.json("info")["label"])
    cv = StratifiedKFold(n_splits=p["cv"], shuffle=True, random_state=p["seed"])
    _require_observed_features(ctx, X, list(cv.split(X, y)))
    pipeline = build_estimator(p["estimator"], p["params"], schema, p["seed"])
    grid = {f"{MODEL_STEP}__{k}": v for k, v in p["grid"].items()}
    candidates = math.prod(len(v) for v in grid.values())
    scoring = _scoring(p["scoring"], y.nunique())
    ctx.progress(
        f"{p['estimator']}: {candidates} candidate(s) x {p['cv']} folds "
        f"= {candidates * p['cv']} fits on {p['n_jobs']} core(s), scoring {scoring}"
    )
    with workers_die_with_this_process():  # a killed run leaves no worker behind
        search = grid_search(
            pipeline,
            grid,
            X,
            y,
            scoring=scoring,
            cv=cv,
            n_jobs=p["n_jobs"],
        )
    table = [
        {
            "params": {k.removeprefix(f"{MODEL_STEP}__"): v for k, v in params.items()},
            "mean_score": search.mean_scores[i],
            "std_score": search.std_scores[i],
            "rank": search.ranks[i],
        }
        for i, params in enumerate(search.params)
    ]
    summary = {
        "estimator": p["estimator"],
        "scoring": scoring,
        "best_params": {
            k.removeprefix(f"{MODEL_STEP}__"): v for k, v in search.best_params.items()
        },
        "best_score": search.best_score,
        "candidates": table,
    }
    ctx.progress(f"best {scoring} {search.best_score:.4f} with {summary['best_params']}")
    model = search.best_estimator
    if p["harden"] is not None:
        from mlwarden.pipeline._adversarial_training import harden

        h, info = p["harden"], ctx.json("info")
        ctx.progress(f"adversarial training: {h['rounds']} round(s) under {h['threat_model']}")
        X_test, y_test = label_parts(ctx.table("test"), info["label"])  # measured, not trained on
        model, hardening = harden(
            model, X, y, threat_model=h["threat_model"], cost_budget=h["cost_budget"],
            rounds=h["rounds"], rows=h["rows"], seed=p["seed"], progress=ctx.progress,
            held_out=(X_test, y_test, info["positive"]),
        )  # fmt: skip
        summary["hardening"] = hardening.model_dump(mode="json")
        ctx.progress(
            f"evasion success on attacked training rows: {hardening.success_before:.1%} before, "
            f"{hardening.success_after:.1%} after"
        )
    return {
        "model": Output(dumps_model(model), MEDIA_TYPE, "model.skops"),
        "search": Output(json_bytes(summary), JSON, "search.json"),
    }


def model_adapter(
    model: bytes, imported: dict[str, Any] | None, feature_names: list[str] | None = None
) -> ModelAdapter:
    """A run's model: trained here (skops), or imported (skops, ONNX or torch, as recorded).

    An imported model that reads one numeric matrix takes the column order its import
    recorded; ``feature_names`` (the frame's order) only where none was.
    """
    if imported is not None:
        columns = imported.get("columns", feature_names)
        return adapter_for(model, imported["media_type"], columns)
    return SklearnAdapter(loads_model(model))


def _adapter(ctx: StepContext, feature_names: list[str] | None = None) -> ModelAdapter:
    """The step's model (see :func:`model_adapter`)."""
    imported = ctx.json("imported") if "imported" in ctx.run["input_sha"] else None
    return model_adapter(ctx.input("model"), imported, feature_names)


def evaluate(ctx: StepContext) -> Outputs:
    """Precision, recall, F1, ROC AUC and the confusion matrix on the held-out split.

    Beside them, ``overlap`` counts the test rows whose features are those of a training row,
    and ``deduplicated`` holds the same scores on the other test rows only: copies of training
    rows measure memory, not generalisation, and inflate every held-out score.
    """
    from mlwarden.data import seen_in_training

    info = ctx.json("info")
    test = ctx.table("test")
    X, y = label_parts(test, info["label"])
    model = _adapter(ctx, [str(c) for c in X.columns])
    X = fitted_columns(model, X)
    proba = model.predict_proba(X)
    scores = classification_metrics(y, proba, model.classes_, info["positive"])
    ctx.progress(f"held-out F1 {scores.f1:.4f}, ROC AUC {scores.roc_auc:.4f}")
    metrics: dict[str, Any] = scores.model_dump(mode="json")
    X_train = fitted_columns(model, label_parts(ctx.table("train"), info["label"])[0])
    overlap, seen = seen_in_training(X_train, X, list(X.columns))
    unseen = (
        classification_metrics(y[~seen], proba[~seen], model.classes_, info["positive"])
        if overlap.unseen_rows
        else None
    )
    metrics["overlap"] = overlap.model_dump(mode="json")
    metrics["deduplicated"] = (
        unseen.model_dump(mode="json", exclude={"roc_curve"}) if unseen is not None else None
    )
    if overlap.seen_in_training:
        line = (
            f"{overlap.seen_in_training:,} of {overlap.test_rows:,} test rows "
            f"({overlap.seen_share:.1%}) copy a training row's features"
        )
        if unseen is not None:
            line += f"; on the other {overlap.unseen_rows:,}: F1 {unseen.f1:.4f}, "
            line += f"ROC AUC {unseen.roc_auc:.4f}"
        ctx.progress(line)
    return {"metrics": Output(json_bytes(metrics), JSON, "metrics.json")}


def audit(ctx: StepContext) -> Outputs:
    """Run every check the policy lists, through the one check registry."""
    info = ctx.json("info")
    X_train, y_train = label_parts(ctx.table("train"), info["label"])
    model = _adapter(ctx, [str(c) for c in X_train.columns])
    X_test, y_test = label_parts(ctx.table("test"), info["label"])
    X_train, X_test = fitted_columns(model, X_train), fitted_columns(model, X_test)
    schema = TableSchema.model_validate(ctx.json("schema"))
    check_ctx = CheckContext(
        model, X_train, y_train, X_test, y_test, info["positive"], schema, ctx.params["seed"]
    )
    findings: list[Finding] = []
    for spec in ctx.params["checks"]:
        params = {k: v for k, v in spec.items() if k != "check"}
        finding = run_check(spec["check"], params, check_ctx)
        ctx.progress(f"{finding.check}: {finding.verdict} ({finding.message})")
        findings.append(finding)
    return {
        "findings": Output(
            json_bytes([f.model_dump(mode="json") for f in findings]), JSON, "findings.json"
        )
    }


def gate(ctx: StepContext) -> Outputs:
    """Apply the policy's gate mode to the findings."""
    findings = [Finding.model_validate(f) for f in ctx.json("findings")]
    result = apply_gate(findings, ctx.params["mode"], ctx.params.get("on_inconclusive", "warn"))
    ctx.progress(result.summary())
    return {"gate": Output(json_bytes(result), JSON, "gate.json")}


def register(ctx: StepContext) -> Outputs:
    """Register the model as a new version: a signed manifest of it and its lineage.

    Fail-closed: a model the gate did not pass is refused and nothing is registered.
    """
    result = GateResult.model_validate(ctx.json("gate"))
    if not result.allow_registration:
        raise GateRejectedError(
            f"gate ({result.mode}) refused the model, not registered: {result.summary()}"
        )
    name = ctx.params["name"]
    signer = ctx.run["signer"]()
    if signer.created_in is not None:
        ctx.progress(
            f"created signing key {signer.key_id} in {signer.created_in} (pinned in its "
            "trust.json); it stays outside the store: back it up"
        )
    input_sha = ctx.run["input_sha"]
    # A language model has no held-out classification metrics; its findings say what it is.
    metrics = ctx.json("metrics") if "metrics" in input_sha else {}
    # An imported model is what its import found (skops, ONNX or a torch state dict).
    imported = ctx.json("imported") if "imported" in input_sha else {}
    ctx.emit(  # built in the transaction that completes the step: it numbers the version
        partial(
            version_record,
            signer=signer,
            name=name,
            model_sha256=input_sha["model"],
            media_type=imported.get("media_type", ctx.params["media_type"]),
            artifacts={r: s for r, s in input_sha.items() if r != "model"},
            metrics=metrics,
            gate=result.model_dump(mode="json"),
            spec_sha256=ctx.run["spec_sha256"],
            run_id=ctx.run["run_id"],
            created_at=datetime.now(UTC),
        )
    )
    reason = result.flagged_because
    flag = f" (flagged: {reason})" if reason else ""
    ctx.progress(f"registering {name}{flag}")
    return {}
