"""The data steps: ingest, validate (with quarantine, drift and bias), split, label errors, impute.

Every row a step keeps out of training is written to a quarantine artifact with its input row
number (``_row``) and the reason, so a model's lineage says which rows it never saw and why.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlwarden import data as data_layer
from mlwarden.data import (
    BATCH_ROWS,
    REASONS_COLUMN,
    DriftThresholds,
    LabelClasses,
    MissingPolicy,
    ParquetSink,
    SchemaInference,
    TableCheck,
    TableSchema,
    coerce_numeric,
    csv_batches,
    decide_counted_classes,
    drift_of_columns,
    drift_report,
    group_stats,
    label_balance,
    parquet_batches,
    parquet_columns,
    read_csv_table,
    table_columns,
    table_rows,
    typed_classes,
    write_rows,
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
    import numpy as np
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

    A CSV source is read in record batches (:func:`~mlwarden.data.csv_batches`, typed as one
    whole-file read types it) and written to ``raw.parquet`` as it is read; the schema is
    inferred and the labels counted batch by batch, so memory does not grow with the table.
    """
    p = ctx.params
    label = p["label"]
    schema: TableSchema | None = None
    inference: SchemaInference | None = None
    if p.get("dataset"):
        dataset = data_layer.load(p["dataset"])
        batches: Iterable[pd.DataFrame] = [dataset.frame]
        schema = dataset.schema
        label = label or dataset.label
        positive = p["positive"] if p["positive"] is not None else dataset.positive
        if label != dataset.label:
            schema = schema.model_copy(update={"label": label})
    else:
        ctx.progress(f"reading {p['path']}")
        batches = csv_batches(ctx.input_path("source"), p["path"], p.get("sep"), rows=BATCH_ROWS)
        positive = p["positive"]
        if p["has_schema"]:
            schema = TableSchema.model_validate(ctx.json("schema"))
            schema = schema.model_copy(update={"label": label})
        else:
            inference = SchemaInference(label=label)
    feedback = _feedback(ctx, label) if p.get("has_feedback") else None
    raw = ParquetSink(ctx.scratch() / "raw.parquet")
    labels = _LabelCounts(label)
    columns: list[str] = []
    dtypes: Any = None
    for batch in batches:
        if not columns:
            _require_label(batch, label)
            columns = [str(c) for c in batch.columns]
            dtypes = _with_feedback_types(batch, feedback, label)
        if inference is not None:
            inference.update(batch)
        batch = batch.astype(dtypes)
        raw.write(batch)
        labels.add(batch[label])
        if raw.rows >= BATCH_ROWS:
            ctx.progress(f"read {raw.rows:,} rows")
    if inference is not None:
        schema = inference.result().model_copy(update={"label": label})
    assert schema is not None
    if feedback is not None:
        feedback = feedback[columns].astype(dtypes)
        ctx.progress(f"{len(feedback):,} feedback rows appended to {raw.rows:,} source rows")
        raw.write(feedback)
        labels.add(feedback[label])
    raw.close()
    if label not in schema.columns:
        raise DataError(f"label column {label!r} is not in the schema")
    inferred = inference is not None
    classes = decide_counted_classes(
        label,
        labels.counts,
        labels.missing,
        positive,
        p.get("classes"),
        None if inferred else schema,
    )
    if inferred:
        schema = _with_label_classes(schema, classes)
    classes = typed_classes(classes, schema.columns[label], labels.values())
    ctx.progress(f"{raw.rows:,} rows x {len(columns)} columns; {_classes_line(classes)}")
    info = {
        "label": label,
        "positive": classes.positive,
        "rows": raw.rows,
        "columns": columns,
        "classes": classes.classes,
        "n_classes": classes.n_classes,
        "label_classes": classes.model_dump(mode="json"),
    }
    return {
        "raw": Output(raw.path, PARQUET, "raw.parquet"),
        "schema": Output(json_bytes(schema), JSON, "schema.json"),
        "info": Output(json_bytes(info), JSON, "info.json"),
    }


class _LabelCounts:
    """How often each label value occurs (in order of first appearance), and missing labels."""

    def __init__(self, column: str) -> None:
        self.column = column
        self.counts: dict[Any, int] = {}
        self.missing = 0
        self._dtype: Any = None

    def add(self, labels: pd.Series) -> None:
        self._dtype = labels.dtype
        self.missing += int(labels.isna().sum())
        for value, count in labels.dropna().value_counts(sort=False).items():
            self.counts[value] = self.counts.get(value, 0) + int(count)

    def values(self) -> pd.Series:
        """Each distinct label value once, typed as the column."""
        import pandas as pd

        values: pd.Series = pd.Series(list(self.counts), name=self.column, dtype=self._dtype)
        return values


def _with_feedback_types(
    first: pd.DataFrame, feedback: pd.DataFrame | None, label: str
) -> pd.Series:
    """The column types of the source table with the feedback rows appended (as concat gives)."""
    import pandas as pd

    if feedback is None:
        return first.dtypes
    missing = [c for c in first.columns if c not in feedback.columns]
    extra = [c for c in feedback.columns if c not in first.columns]
    if missing or extra:
        raise DataError(
            f"feedback rows must have the source table's columns; missing {missing}, "
            f"unexpected {extra}"
        )
    return pd.concat([first.iloc[:1], feedback[list(first.columns)].iloc[:1]]).dtypes


def _feedback(ctx: StepContext, label: str) -> pd.DataFrame:
    """The production feedback rows to append to the source table (every one labelled)."""
    feedback = read_csv_table(ctx.input("feedback"), "the feedback table", ctx.params.get("sep"))
    if label in feedback.columns and feedback[label].isna().any():
        raise DataError(f"{int(feedback[label].isna().sum())} feedback rows have no label")
    return feedback


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


def _reference_table(ctx: StepContext, reference: str) -> pd.DataFrame:
    if reference in data_layer.list_datasets():
        return data_layer.load(reference).frame
    return read_csv_table(ctx.input("reference"), f"drift reference {reference}")


def _quality(
    ctx: StepContext,
    raw: Path,
    clean: Path,
    schema: TableSchema,
    info: dict[str, Any],
) -> dict[str, Any]:
    """Label balance, classes, groups, and drift of the whole batch (see ``validate``).

    Each is read a few columns at a time from the step's files: the table is never whole in
    memory.
    """
    p = ctx.params
    label, positive = info["label"], info["positive"]
    quality: dict[str, Any] = {
        "label_balance": label_balance(parquet_columns(clean, [label])[label]).model_dump(
            mode="json"
        ),
        "label_classes": info.get("label_classes"),
        "groups": [],
        "drift": None,
    }
    absent = [c for c in p["protected"] if c not in table_columns(clean)]
    if absent:
        raise DataError(f"data.protected names column(s) {absent} that the table does not have")
    if p["protected"]:
        features = parquet_columns(clean, [label, *p["protected"]])
        stats = group_stats(features, label, p["protected"], positive)
        quality["groups"] = [g.model_dump(mode="json") for g in stats]
    if p["drift"] is not None:
        reference = coerce_numeric(_reference_table(ctx, p["drift"]["reference"]), schema)
        in_raw = table_columns(raw)
        shared = [c for c in schema.columns if c in reference.columns and c in in_raw]
        ctx.progress(f"drift against {p['drift']['reference']} on {len(shared)} columns")
        thresholds = DriftThresholds.model_validate(p["drift"]["thresholds"])
        columns = [  # a column at a time: each is compared on its own
            drift_report(
                reference[[name]],
                coerce_numeric(parquet_columns(raw, [name]), schema),
                thresholds,
                schema=schema,
            ).columns[0]
            for name in shared
        ]
        quality["drift"] = drift_of_columns(columns, thresholds).model_dump(mode="json")
    return quality


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

    The table is read in record batches and both tables written as they go
    (:class:`~mlwarden.data.TableCheck`), with the answer of one whole-table pass.
    """
    p = ctx.params
    schema = TableSchema.model_validate(ctx.json("schema"))
    info = ctx.json("info")
    policies = {c: MissingPolicy.model_validate(v) for c, v in p["missing"].items()}
    raw = ctx.input_path("raw")
    clean, quarantine = ctx.scratch() / "clean.parquet", ctx.scratch() / "quarantine.csv"
    check = TableCheck(
        schema,
        policies,
        label_classes=info.get("classes"),
        quarantine=quarantine,
        clean=clean,
        label=info["label"],
    )
    total = table_rows(raw)
    for batch in parquet_batches(raw, BATCH_ROWS):
        check.add(batch)
        if total > BATCH_ROWS:
            ctx.progress(f"validated {check.rows:,} of {total:,} rows")
    report, duplicates = check.finish(p.get("duplicates", "report"))
    assert duplicates is not None
    ctx.progress(
        f"{report.rows_accepted:,} rows accepted, {report.rows_rejected:,} quarantined; "
        f"{duplicates.duplicate_rows:,} duplicate rows ({duplicates.duplicate_share:.1%})"
        + (f", {duplicates.dropped:,} dropped" if duplicates.dropped else "")
    )
    outputs = {
        "clean": Output(clean, PARQUET, "clean.parquet"),
        "rejected": Output(quarantine, CSV, "quarantine.csv"),
        "report": Output(json_bytes(report), JSON, "validation.json"),
    }
    try:
        quality = _quality(ctx, raw, clean, schema, info)
    except DataError:
        for role in ("rejected", "report"):  # the quarantine is kept whatever fails next
            ctx.keep(role, outputs[role])
        raise
    quality["duplicates"] = duplicates.model_dump(mode="json")
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
    """Stratified, seeded held-out split; training rows sampled down to ``max_rows`` if set.

    Only the label column is read whole; rows are written in the split's shuffled order in
    parts (:func:`write_rows`), so the split of ``train_test_split`` on the whole table comes
    out without holding it. ``sample.json`` records how many training rows there were and how
    many the model is trained on.
    """
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import train_test_split

    p = ctx.params
    clean = ctx.input_path("clean")
    label = ctx.json("info")["label"]
    labels = parquet_columns(clean, [label])[label]
    counts = labels.value_counts()
    if len(counts) < 2:
        raise DataError(
            f"label {label!r} has a single class {list(counts.index)}: nothing to learn"
        )
    if counts.min() < 2:
        raise DataError(
            f"class {counts.idxmin()!r} of {label!r} has {counts.min()} row; "
            "a stratified split needs at least 2 rows per class"
        )
    codes = pd.factorize(labels, sort=True)[0]  # small integers: the same strata, less memory
    del labels
    train, test = train_test_split(
        np.arange(len(codes)),
        test_size=p["test_size"],
        random_state=p["seed"],
        stratify=codes,
    )
    available, max_rows = len(train), p.get("max_rows")
    if max_rows is not None and available > max_rows:
        train = _sample(train, codes[train], max_rows, p["seed"])
    sample = {
        "train_rows": available,
        "used": len(train),
        "max_rows": max_rows,
        "how": "all" if len(train) == available else "stratified random sample (split seed)",
    }
    ctx.progress(
        f"{available:,} train rows"
        + (f" (training on a sample of {len(train):,})" if len(train) < available else "")
        + f", {len(test):,} test rows"
    )
    scratch = ctx.scratch()
    write_rows(clean, train, scratch / "train.parquet", scratch, ctx.progress)
    write_rows(clean, test, scratch / "test.parquet", scratch, ctx.progress)
    return {
        "train": Output(scratch / "train.parquet", PARQUET, "train.parquet"),
        "test": Output(scratch / "test.parquet", PARQUET, "test.parquet"),
        "sample": Output(json_bytes(sample), JSON, "sample.json"),
    }


def _sample(rows: np.ndarray, strata: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``size`` of ``rows``, stratified when every class can keep a row; else the first."""
    from sklearn.model_selection import train_test_split

    try:
        kept: np.ndarray = train_test_split(
            rows, train_size=size, random_state=seed, stratify=strata
        )[0]
    except ValueError:  # a class too rare to stratify: the split's shuffled order is random
        kept = rows[:size]
    return kept


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
