"""``mlwarden validate`` and ``mlwarden schema infer``: the data checks outside a pipeline."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from mlwarden.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from mlwarden.data import DriftReport, MissingPolicy, ValidationReport

schema_app = typer.Typer(help="Infer and edit table schemas.", no_args_is_help=True)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def read_table(source: str) -> tuple[pd.DataFrame, str]:
    """A bundled dataset by name, or a CSV file; with a short name for output folders."""
    import pandas as pd

    from mlwarden import datasets

    if source in datasets.list_datasets():
        return datasets.load(source).frame, source
    path = Path(source)
    if not path.exists():
        raise DataError(
            f"{source} is neither a CSV file nor a bundled dataset "
            f"({', '.join(datasets.list_datasets())})"
        )
    try:
        return pd.read_csv(io.BytesIO(path.read_bytes())), path.stem
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path} is not a readable CSV table: {exc}") from exc


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
) -> int:
    """Validate a table: quarantine rows that break the schema, and test drift."""
    from mlwarden.data import TableSchema, drift_report, infer_schema, validate_table

    if schema is None and against is None:
        raise typer.BadParameter("give --schema FILE or --against REFERENCE (or both)")
    frame, name = read_table(data)
    reference = read_table(against)[0] if against is not None else None
    if schema is not None:
        table_schema = TableSchema.from_yaml(schema)
    else:
        assert reference is not None
        table_schema = infer_schema(reference)
    _accepted, quarantined, report = validate_table(
        frame, table_schema, _parse_missing(missing or [])
    )
    _show_report(report)
    drift = None
    if reference is not None:
        shared = [c for c in table_schema.columns if c in reference.columns and c in frame]
        drift = drift_report(reference[shared], frame[shared], schema=table_schema)
        _show_drift(drift)
    folder = out_dir or Path("mlwarden-validation") / name
    folder.mkdir(parents=True, exist_ok=True)
    quarantined.to_csv(folder / "quarantine.csv", index=False)
    result = {
        "data": data,
        "report": report.model_dump(mode="json"),
        "drift": drift.model_dump(mode="json") if drift else None,
        "max_rejected": max_rejected,
    }
    (folder / "validation.json").write_text(json.dumps(result, indent=2) + "\n")
    out.print(f"quarantine: {folder / 'quarantine.csv'}\nreport:     {folder / 'validation.json'}")
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
) -> None:
    """Infer a schema (types, ranges, categories, missing rates) and print it as YAML."""
    from mlwarden.data import infer_schema

    frame, _ = read_table(data)
    print(infer_schema(frame, label=label).to_yaml(), end="")
