"""``mlwarden validate`` and ``mlwarden schema infer``: the data checks outside a pipeline."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from mlwarden.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from mlwarden.data import (
        DriftReport,
        MissingPolicy,
        ParquetSink,
        TableSchema,
        ValidationReport,
    )

schema_app = typer.Typer(help="Infer and edit table schemas.", no_args_is_help=True)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def table_batches(source: str, sep: str | None = None) -> tuple[Iterable[pd.DataFrame], str]:
    """A bundled dataset (one batch) or a CSV file read in batches; with a short name."""
    from mlwarden import data as datasets
    from mlwarden.data import csv_batches

    if source in datasets.list_datasets():
        return [datasets.load(source).frame], source
    path = Path(source)
    if not path.is_file():
        raise DataError(
            f"{source} is neither a CSV file nor a bundled dataset "
            f"({', '.join(datasets.list_datasets())})"
        )
    return csv_batches(path, str(path), sep), path.stem


def _kept(batches: Iterable[pd.DataFrame], sink: ParquetSink | None) -> Iterator[pd.DataFrame]:
    """The batches, also written to ``sink`` (closed at the end) when there is one."""
    for batch in batches:
        if sink is not None:
            sink.write(batch)
        yield batch
    if sink is not None:
        sink.close()


def read_table(source: str, sep: str | None = None) -> tuple[pd.DataFrame, str]:
    """A bundled dataset by name, or a CSV file; with a short name for output folders."""
    from mlwarden import data as datasets
    from mlwarden.data import read_csv_table

    if source in datasets.list_datasets():
        return datasets.load(source).frame, source
    path = Path(source)
    if not path.exists():
        raise DataError(
            f"{source} is neither a CSV file nor a bundled dataset "
            f"({', '.join(datasets.list_datasets())})"
        )
    return read_csv_table(path.read_bytes(), str(path), sep), path.stem


SepOpt = Annotated[
    str | None,
    typer.Option(
        "--sep", help="CSV separator (, ; tab |); detected from the first lines if not given."
    ),
]


def _separator(sep: str | None) -> str | None:
    if sep is None:
        return None
    named = {"tab": "\t", "\\t": "\t"}.get(sep, sep)
    if named not in (",", ";", "\t", "|"):
        raise typer.BadParameter(f"{sep!r}: expected one of , ; tab |", param_hint="--sep")
    return named


def _parse_missing(specs: list[str]) -> dict[str, MissingPolicy]:
    from mlwarden.data import MissingPolicy

    policies: dict[str, MissingPolicy] = {}
    for spec in specs:
        column, sep, rule = spec.partition("=")
        action, _, strategy = rule.partition(":")
        if not sep or not column or action not in ("fail", "drop", "impute", "keep"):
            raise typer.BadParameter(
                f"{spec!r}: expected COLUMN=ACTION or COLUMN=impute:STRATEGY, with ACTION one "
                "of fail, drop, impute, keep",
                param_hint="--missing",
            )
        try:
            policies[column] = MissingPolicy.model_validate(
                {"action": action, "strategy": strategy or None}
            )
        except ValueError as exc:
            raise typer.BadParameter(f"{spec!r}: {exc}", param_hint="--missing") from None
    return policies


def _show_report(report: ValidationReport) -> None:
    out.print(
        f"{report.rows_in:,} rows in = {report.rows_accepted:,} accepted + "
        f"{report.rows_rejected:,} quarantined ({report.rejected_fraction:.2%})"
    )
    if report.missing_columns:
        out.print(f"[red]missing columns:[/] {', '.join(report.missing_columns)}")
    if report.unknown_columns:
        out.print(f"[yellow]unknown columns (left out):[/] {', '.join(report.unknown_columns)}")
    if report.issues:
        table = Table(title="quarantine reasons", title_justify="left")
        for column in ("column", "rule", "rows", "examples"):
            table.add_column(column)
        for issue in report.issues:
            table.add_row(issue.column, issue.rule, f"{issue.count:,}", ", ".join(issue.examples))
        out.print(table)


def _show_drift(drift: DriftReport) -> None:
    table = Table(title="drift against the reference", title_justify="left")
    for column in ("column", "kind", "PSI", "KS p", "chi2 p", "JS", "drifted"):
        table.add_column(column)

    def fmt(value: float | None, spec: str) -> str:
        return "" if value is None else format(value, spec)

    for c in drift.columns:
        table.add_row(
            c.column,
            c.kind,
            fmt(c.psi, ".4f"),
            fmt(c.ks_pvalue, ".2g"),
            fmt(c.chi2_pvalue, ".2g"),
            fmt(c.js_distance, ".4f"),
            "[red]yes[/]" if c.drifted else "no",
        )
    out.print(table)


def validate_command(
    data: Annotated[str, typer.Argument(help="A CSV file or a bundled dataset name.")],
    schema: Annotated[
        Path | None, typer.Option("--schema", help="Schema YAML (see `mlwarden schema infer`).")
    ] = None,
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            help="Reference table (CSV or dataset): infer the schema "
            "from it unless --schema is given, and test drift.",
        ),
    ] = None,
    missing: Annotated[
        list[str] | None,
        typer.Option(
            "--missing", help="COLUMN=fail|drop|keep or COLUMN=impute:STRATEGY; repeatable."
        ),
    ] = None,
    max_rejected: Annotated[
        float,
        typer.Option(
            "--max-rejected",
            min=0.0,
            max=1.0,
            help="Share of rows that may be quarantined before the batch fails.",
        ),
    ] = 0.0,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where quarantine.csv and validation.json go.")
    ] = None,
    sep: SepOpt = None,
) -> int:
    """Validate a table: quarantine rows that break the schema, and test drift.

    The quarantine and the report are written before drift is tested. Drift compares every
    row of the batch with the reference, values that are not numbers in a numeric column
    counting as missing on either side: leaving out the quarantined rows would hide the very
    out-of-range values that show a shift, and bias the other columns.
    """
    from mlwarden.data import (
        DriftThresholds,
        ParquetSink,
        TableSchema,
        coerce_numeric,
        drift_of_columns,
        drift_report,
        infer_schema,
        parquet_columns,
        table_columns,
        validate_batches,
    )

    if schema is None and against is None:
        raise typer.BadParameter("give --schema FILE or --against REFERENCE (or both)")
    used_sep = _separator(sep)
    batches, name = table_batches(data, used_sep)
    reference = read_table(against, used_sep)[0] if against is not None else None
    if schema is not None:
        table_schema = TableSchema.from_yaml(schema)
    else:
        assert reference is not None
        table_schema = infer_schema(reference)
    folder = out_dir or Path("mlwarden-validation") / name
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlwarden-validate-") as scratch:
        kept = ParquetSink(Path(scratch) / "table.parquet") if reference is not None else None
        report = validate_batches(
            _kept(batches, kept),
            table_schema,
            _parse_missing(missing or []),
            quarantine=folder / "quarantine.csv",
        )
        _show_report(report)
        result = {
            "data": data,
            "report": report.model_dump(mode="json"),
            "drift": None,
            "max_rejected": max_rejected,
        }
        report_path = folder / "validation.json"
        report_path.write_text(json.dumps(result, indent=2) + "\n")
        out.print(f"quarantine: {folder / 'quarantine.csv'}\nreport:     {report_path}")
        drift = None
        if reference is not None and kept is not None:
            present = table_columns(kept.path)
            shared = [c for c in table_schema.columns if c in reference.columns and c in present]
            thresholds = DriftThresholds()
            drift = drift_of_columns(
                [  # a column at a time: the table is never whole in memory
                    drift_report(
                        coerce_numeric(reference[[c]], table_schema),
                        coerce_numeric(parquet_columns(kept.path, [c]), table_schema),
                        thresholds,
                        schema=table_schema,
                    ).columns[0]
                    for c in shared
                ],
                thresholds,
            )
            _show_drift(drift)
            result["drift"] = drift.model_dump(mode="json")
            report_path.write_text(json.dumps(result, indent=2) + "\n")
    problems = []
    if report.rejected_fraction > max_rejected:
        problems.append(f"{report.rejected_fraction:.2%} quarantined > {max_rejected:.2%} allowed")
    if report.missing_failures:
        problems.append(f"missing values where the policy says fail: {report.missing_failures}")
    if drift is not None and drift.drifted:
        problems.append(f"drift in {', '.join(drift.drifted_columns)}")
    if problems:
        err.print(f"[red]FAILED:[/] {'; '.join(problems)}")
        return 1
    out.print("[green]passed[/]")
    return 0


@schema_app.command("infer")
def schema_infer(
    data: Annotated[str, typer.Argument(help="A CSV file or a bundled dataset name.")],
    label: Annotated[str | None, typer.Option("--label", help="The label column.")] = None,
    margin: Annotated[
        float,
        typer.Option(
            "--margin",
            min=0.0,
            help="Widen each numeric feature range by this share of its width on both sides "
            "(0.1: 10%); without it, values just outside the reference's range are rejected.",
        ),
    ] = 0.0,
    sep: SepOpt = None,
) -> None:
    """Infer a schema (types, ranges, categories, missing rates) and print it as YAML.

    What inference saw that a person should know (numbers stored as text with a few
    non-numbers, stray label values) is said on stderr, so the YAML on stdout stays clean.
    """
    from mlwarden.data import infer_schema

    frame, _ = read_table(data, _separator(sep))
    schema = infer_schema(frame, label=label, margin=margin)
    for line in _notes(frame, schema):
        err.print(line)
    print(schema.to_yaml(), end="")


def _notes(frame: pd.DataFrame, schema: TableSchema) -> list[str]:
    """One line per column whose inferred type hides something: stray text, stray labels."""
    from mlwarden.data import decide_classes

    notes = []
    for name, col in schema.columns.items():
        if col.non_numeric_rate:
            count = round(col.non_numeric_rate * len(frame))
            seen = ", ".join(map(repr, col.non_numeric_examples or []))
            notes.append(
                f"{name}: {col.type}, but {count:,} of {len(frame):,} values are not numbers "
                f"({seen}): validate quarantines those rows as 'not a number'"
            )
    if schema.label is not None:
        try:
            classes = decide_classes(frame[schema.label])
        except DataError as exc:
            notes.append(f"label {schema.label}: {exc}")
        else:
            line = f"label {schema.label}: {classes.n_classes} classes {classes.classes[:10]}"
            if classes.stray:
                line += f"; values too rare to be classes (quarantined in a run): {classes.stray}"
            if classes.missing:
                line += f"; {classes.missing} row(s) without a label"
            notes.append(line)
    return notes
