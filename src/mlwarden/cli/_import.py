"""``mlwarden import``: bring a model file in through the scan, a safe load, the gate, signing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mlwarden.cli._audit import _policy
from mlwarden.cli._model_file import refuse_unsafe, scan_policy_of
from mlwarden.data import list_datasets

_NAME = re.compile(r"[A-Za-z0-9_.-]+")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def import_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="Model file: scikit-learn pickle or joblib, skops, ONNX, torch state dict.",
            exists=True,
            dir_okay=False,
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="Name to register the model under.")],
    data: Annotated[
        str | None,
        typer.Option("--data", help="Labelled table to audit it on: CSV or a bundled dataset."),
    ] = None,
    label: Annotated[str | None, typer.Option("--label", help="Label column of --data.")] = None,
    checks: Annotated[
        str | None, typer.Option("--checks", help="With --data: comma list of check groups.")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="With --data: YAML list of checks.")
    ] = None,
    scan_policy: Annotated[
        Path | None,
        typer.Option("--scan-policy", help="Scan policy YAML: allow_globals, archive limits."),
    ] = None,
    store: Annotated[Path, typer.Option("--store", envvar="MLWARDEN_STORE")] = Path(".mlwarden"),
    db_url: Annotated[str | None, typer.Option("--db-url", envvar="MLWARDEN_DB_URL")] = None,
) -> int:
    """Scan a model file, load it without running its code, convert, gate, sign and register.

    Unsafe files are refused with the scan's findings (exit 1) and nothing is registered.
    With --data, the audit and gate run as for a trained model: a failing model is not
    registered (exit 1).
    """
    from mlwarden.cli._progress import RichProgress
    from mlwarden.lineage import LineageStore
    from mlwarden.models import scan_file
    from mlwarden.pipeline import LocalExecutor, import_spec, write_run_report

    if data is None and (checks is not None or policy is not None or label is not None):
        raise typer.BadParameter("--label, --checks and --policy need --data: a labelled table")
    if not _NAME.fullmatch(name):
        raise typer.BadParameter(
            f"{name!r}: expected letters, digits, '.', '_' or '-'", param_hint="--name"
        )
    if data is not None and label is None and data not in list_datasets():
        raise typer.BadParameter(f"{data} is a table: name its label column", param_hint="--label")
    rules = scan_policy_of(scan_policy)
    report = scan_file(file, rules)
    if not report.safe:
        return refuse_unsafe(report)
    out.print(f"scanned {file}: {report.format}, safe ({len(report.globals)} globals allowed)")
    chosen = [{"check": k, **p} for k, p in _policy(checks, policy)] if data else None
    spec = import_spec(file, name, data=data, label=label, checks=chosen, scan_policy=rules)
    lineage = LineageStore(store, url=db_url)
    try:
        result = LocalExecutor(lineage, RichProgress(out)).run(spec)
        run, _, html_path = write_run_report(lineage, spec, result, None)
    finally:
        lineage.close()
    for check in run.checks:
        out.print(f"  {check.verdict}: {check.check}: {check.message}", soft_wrap=True)
    out.print(f"report: {html_path}", soft_wrap=True)
    if result.status != "completed":
        err.print(f"[red]not registered:[/] {result.error}", soft_wrap=True)
        return result.exit_code or 1
    out.print(f"[green]registered[/] [bold]{result.model_version}[/] (signed), from {file}")
    return 0
