"""The data steps: ingest, validate (with quarantine, drift and bias), split, label errors, impute.

Every row a step keeps out of training is written to a quarantine artifact with its input row
number (``_row``) and the reason, so a model's lineage says which rows it never saw and why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlwarden import data as data_layer
from mlwarden.data import (
    REASONS_COLUMN,
    DriftThresholds,
    LabelClasses,
    MissingPolicy,
    TableSchema,
    coerce_numeric,
    decide_classes,
    drift_report,
    find_duplicates,
    group_stats,
    infer_schema,
    label_balance,
    read_csv_table,
    typed_classes,
    validate_table,
)
from mlwarden.errors import DataError
from mlwarden.pipeline._context import Output, StepContext
from mlwarden.pipeline._io import (
    CSV,
    JSON,
    PARQUET,
    ROW_ID,
    Outputs,
    json_bytes,
    label_parts,
    table_bytes,
)

if TYPE_CHECKING:
    import pandas as pd


def _require_label(frame: pd.DataFrame, label: str) -> None:
    if label not in frame.columns:
        raise DataError(
            f"label column {label!r} is not in the table; its columns are {list(frame.columns)}"
        )


def ingest(ctx: StepContext) -> Outputs:
    """Read the source table and fix its schema and label classes.

    The schema is the bundled one, a given file, or inferred. The label's classes are decided
    here (``decide_classes``: ``data.classes``, the schema's categories, or the frequency rule)
    and recorded in ``info.json``, with the spec's ``positive`` resolved to the value as it
    occurs in the column; validation quarantines every other label value.
    """
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
        ctx.progress(f"reading {p['path']}")
        frame = read_csv_table(ctx.input("source"), p["path"], p.get("sep"))
        positive = p["positive"]
        _require_label(frame, label)
        schema = (
            TableSchema.model_validate(ctx.json("schema"))
            if p["has_schema"]
            else infer_schema(frame, label=label)
        )
        schema = schema.model_copy(update={"label": label})
    _require_label(frame, label)
    if p.get("has_feedback"):
        frame = _with_feedback(ctx, frame, label)
    if label not in schema.columns:
        raise DataError(f"label column {label!r} is not in the schema")
    inferred = not p.get("dataset") and not p["has_schema"]
    classes = decide_classes(frame[label], positive, p.get("classes"), None if inferred else schema)
    if inferred:
        schema = _with_label_classes(schema, classes)
    classes = typed_classes(classes, schema.columns[label], frame[label])
    ctx.progress(f"{len(frame):,} rows x {frame.shape[1]} columns; {_classes_line(classes)}")
    info = {
        "label": label,
        "positive": classes.positive,
        "rows": len(frame),
        "columns": list(frame.columns),
        "classes": classes.classes,
        "n_classes": classes.n_classes,
        "label_classes": classes.model_dump(mode="json"),
    }
    return {
        "raw": Output(table_bytes(frame), PARQUET, "raw.parquet"),
        "schema": Output(json_bytes(schema), JSON, "schema.json"),
        "info": Output(json_bytes(info), JSON, "info.json"),
    }


def _with_label_classes(schema: TableSchema, classes: LabelClasses) -> TableSchema:
    """An inferred schema whose label column lists the decided classes, not stray values."""
    column = schema.columns[classes.column]
    if column.type != "category":
        return schema
    frequencies = {
        k: v for k, v in (column.frequencies or {}).items() if k in map(str, classes.classes)
    }
    fixed = column.model_copy(
        update={"categories": classes.classes, "frequencies": frequencies or None}
    )
    return schema.model_copy(update={"columns": {**schema.columns, classes.column: fixed}})


def _classes_line(classes: LabelClasses) -> str:
    line = f"label {classes.column!r}: {classes.n_classes} classes {classes.classes[:10]}"
    if classes.stray or classes.missing:
        line += (
            f", {sum(classes.stray.values()) + classes.missing} row(s) with a stray or missing "
            "label (quarantined by validate)"
        )
    return line


def _with_feedback(ctx: StepContext, frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """The source table with the production feedback rows appended (same columns)."""
    import pandas as pd

    feedback = read_csv_table(ctx.input("feedback"), "the feedback table", ctx.params.get("sep"))
    missing = [c for c in frame.columns if c not in feedback.columns]
    extra = [c for c in feedback.columns if c not in frame.columns]
    if missing or extra:
        raise DataError(
            f"feedback rows must have the source table's columns; missing {missing}, "
            f"unexpected {extra}"
        )
    if feedback[label].isna().any():
        raise DataError(f"{int(feedback[label].isna().sum())} feedback rows have no label")
    ctx.progress(f"{len(feedback):,} feedback rows appended to {len(frame):,} source rows")
    return pd.concat([frame, feedback[list(frame.columns)]], ignore_index=True)


def _reference_table(ctx: StepContext, reference: str) -> pd.DataFrame:
    if reference in data_layer.list_datasets():
        return data_layer.load(reference).frame
    return read_csv_table(ctx.input("reference"), f"drift reference {reference}")


def _quality(
    ctx: StepContext,
    raw: pd.DataFrame,
    accepted: pd.DataFrame,
    schema: TableSchema,
    info: dict[str, Any],
) -> dict[str, Any]:
    """Label balance, classes, groups, and drift of the whole batch (see ``validate``)."""
    p = ctx.params
    label, positive = info["label"], info["positive"]
    features = accepted.drop(columns=[ROW_ID])
    quality: dict[str, Any] = {
        "label_balance": label_balance(features[label]).model_dump(mode="json"),
        "label_classes": info.get("label_classes"),
        "groups": [],
        "drift": None,
    }
    absent = [c for c in p["protected"] if c not in features.columns]
    if absent:
        raise DataError(f"data.protected names column(s) {absent} that the table does not have")
    if p["protected"]:
        stats = group_stats(features, label, p["protected"], positive)
        quality["groups"] = [g.model_dump(mode="json") for g in stats]
    if p["drift"] is not None:
        reference = coerce_numeric(_reference_table(ctx, p["drift"]["reference"]), schema)
        shared = [c for c in schema.columns if c in reference.columns and c in raw.columns]
        ctx.progress(f"drift against {p['drift']['reference']} on {len(shared)} columns")
        drift = drift_report(
            reference[shared],
            coerce_numeric(raw[shared], schema),
            DriftThresholds.model_validate(p["drift"]["thresholds"]),
            schema=schema,
        )
        quality["drift"] = drift.model_dump(mode="json")
    return quality


def _duplicates(
    accepted: pd.DataFrame, label: str, policy: str
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Count rows that repeat an earlier accepted row; with policy ``drop``, take them out."""
    columns = [c for c in accepted.columns if c != ROW_ID]
    found, repeated = find_duplicates(accepted, label, columns)
    if policy != "drop" or not found.duplicate_rows:
        report = found.model_copy(update={"policy": policy})
        return accepted, accepted.iloc[0:0], report.model_dump(mode="json")
    dropped = accepted[repeated].copy()
    dropped[REASONS_COLUMN] = "duplicate of an earlier accepted row (policy: drop)"
    kept = accepted[~repeated].reset_index(drop=True)
    report = found.model_copy(update={"policy": policy, "dropped": len(dropped)})
    return kept, dropped, report.model_dump(mode="json")


def validate(ctx: StepContext) -> Outputs:
    """Check the raw table against its schema and the data policy; quarantine what fails.

    Rows that break a column rule, a cross-column rule or a ``drop`` missing-value policy, and
    rows whose label is not one of the label's classes, are quarantined with their reasons;
    with ``duplicates: drop``, so are rows that repeat an earlier accepted row (not counted
    against ``max_rejected_fraction``: nothing is lost). Drift compares every row of the batch
    with the reference (non-numbers in numeric columns as missing): quarantined out-of-range
    rows are evidence of a shift, and leaving them out would bias the other columns. The step
    fails (keeping its outputs) when more rows than the policy allows are quarantined, when a
    ``fail`` policy meets a missing value, or when the table drifted from its reference and the
    drift policy says fail. The quarantine is kept whatever fails.
    """
    import pandas as pd

    p = ctx.params
    schema = TableSchema.model_validate(ctx.json("schema"))
    info = ctx.json("info")
    policies = {c: MissingPolicy.model_validate(v) for c, v in p["missing"].items()}
    raw = ctx.table("raw")
    accepted, quarantined, report = validate_table(
        raw, schema, policies, row_ids=True, label_classes=info.get("classes")
    )
    accepted, dropped, duplicates = _duplicates(
        accepted, info["label"], p.get("duplicates", "report")
    )
    ctx.progress(
        f"{report.rows_accepted:,} rows accepted, {report.rows_rejected:,} quarantined; "
        f"{duplicates['duplicate_rows']:,} duplicate rows ({duplicates['duplicate_share']:.1%})"
        + (f", {len(dropped):,} dropped" if len(dropped) else "")
    )
    if len(dropped):
        quarantined = pd.concat([quarantined, dropped], ignore_index=True).sort_values(ROW_ID)
    outputs = {
        "clean": Output(table_bytes(accepted), PARQUET, "clean.parquet"),
        "rejected": Output(quarantined.to_csv(index=False).encode(), CSV, "quarantine.csv"),
        "report": Output(json_bytes(report), JSON, "validation.json"),
    }
    try:
        quality = _quality(ctx, raw, accepted, schema, info)
    except DataError:
        for role in ("rejected", "report"):  # the quarantine is kept whatever fails next
            ctx.keep(role, outputs[role])
        raise
    quality["duplicates"] = duplicates
    outputs["quality"] = Output(json_bytes(quality), JSON, "quality.json")
    failures: list[str] = []
    limit = p["max_rejected_fraction"]
    if report.rejected_fraction > limit:
        worst = ", ".join(f"{i.column} {i.rule} ({i.count})" for i in report.issues[:5])
        failures.append(
            f"validation quarantined {report.rows_rejected} of {report.rows_in} rows "
            f"({report.rejected_fraction:.1%}, policy allows {limit:.1%}): {worst}; "
            "data.max_rejected_fraction sets how many may be left out"
        )
    if report.missing_failures:
        failures.append(f"missing values where the policy says fail: {report.missing_failures}")
    drift = quality["drift"]
    if drift is not None and drift["drifted"] and p["drift"]["action"] == "fail":
        failures.append(f"the table drifted from its reference in {drift['drifted_columns']}")
    if failures:
        for role, output in outputs.items():
            ctx.keep(role, output)
        raise DataError(
            "; ".join(failures) + ". Quarantined rows and their reasons are kept in the store "
            "as quarantine.csv, the statistics as validation.json and quality.json."
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


def label_errors(ctx: StepContext) -> Outputs:
    """Find likely mislabeled training rows by confident learning; report, drop or fail.

    Out-of-fold probabilities come from the spec's ``label_errors.estimator`` with the same
    preprocessing as training; only the training split is examined, so the held-out split stays
    an honest measure. Dropping more than ``max_fraction`` of the rows fails instead: a share
    that large means a broken label column, not a few slips.
    """
    from mlwarden.data import find_label_issues, out_of_fold_probabilities
    from mlwarden.pipeline._estimators import build_estimator
    from mlwarden.pipeline._workers import workers_die_with_this_process

    p = ctx.params
    info = ctx.json("info")
    schema = TableSchema.model_validate(ctx.json("schema"))
    train = ctx.table("train")
    X, y = label_parts(train, info["label"])
    ctx.progress(f"out-of-fold probabilities: {p['estimator']}, {p['cv']} folds")
    estimator = build_estimator(p["estimator"], {}, schema, p["seed"])
    with workers_die_with_this_process():  # a killed run leaves no worker behind
        proba, classes = out_of_fold_probabilities(
            estimator, X, y, cv=p["cv"], seed=p["seed"], n_jobs=2
        )
    issues = find_label_issues(y.to_numpy(), proba, classes, method=p["method"])
    share = len(issues.indices) / len(train) if len(train) else 0.0
    flagged = train.iloc[issues.indices].copy()
    flagged[REASONS_COLUMN] = [
        f"likely label error: given {g!r}, model says {s!r} (self-confidence {c:.3f})"
        for g, s, c in zip(issues.given, issues.suggested, issues.self_confidence, strict=True)
    ]
    ctx.progress(f"{len(flagged):,} likely label errors ({share:.1%} of training rows)")
    report = {
        "action": p["action"],
        "flagged": len(flagged),
        "flagged_fraction": share,
        "max_fraction": p["max_fraction"],
        "estimated_noise_rate": issues.estimated_noise_rate,
        "method": issues.method,
        "rows": [
            {"row": int(r), "given": g, "suggested": s, "self_confidence": c}
            for r, g, s, c in zip(
                flagged[ROW_ID], issues.given, issues.suggested, issues.self_confidence, strict=True
            )
        ],
    }
    dropping = p["action"] == "drop"
    kept = train.drop(index=flagged.index) if dropping else train
    outputs = {
        "train": Output(table_bytes(kept.reset_index(drop=True)), PARQUET, "train.parquet"),
        "issues": Output(json_bytes(report), JSON, "label_issues.json"),
        "dropped": Output(
            (flagged if dropping else flagged.iloc[0:0]).to_csv(index=False).encode(),
            CSV,
            "label_dropped.csv",
        ),
    }
    if p["action"] in ("drop", "fail") and share > p["max_fraction"]:
        ctx.keep("issues", outputs["issues"])
        raise DataError(
            f"{len(flagged)} training rows ({share:.1%}) look mislabeled, more than the policy's "
            f"max_fraction {p['max_fraction']:.1%}; the ranked rows are in label_issues.json"
        )
    return outputs


def impute(ctx: StepContext) -> Outputs:
    """Fit the ``impute`` missing-value policies on training rows, then fill train and test."""
    from mlwarden.data import fit_imputation

    policies = {c: MissingPolicy.model_validate(v) for c, v in ctx.params["missing"].items()}
    train, test = ctx.table("train"), ctx.table("test")
    imputation = fit_imputation(train, policies)
    filled = ", ".join(f"{c.column}={c.value!r}" for c in imputation.columns)
    ctx.progress(f"fitted on {len(train):,} training rows: {filled}")
    return {
        "train": Output(table_bytes(imputation.apply(train)), PARQUET, "train.parquet"),
        "test": Output(table_bytes(imputation.apply(test)), PARQUET, "test.parquet"),
        "imputation": Output(json_bytes(imputation), JSON, "imputation.json"),
    }
