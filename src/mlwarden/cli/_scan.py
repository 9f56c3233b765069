"""``mlwarden scan``: check model files statically before anything loads them."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

out = Console(highlight=False)

# Exit status when a file is unsafe: 1, as when the gate refuses a model (README's table).
EXIT_UNSAFE = 1


class ScanFormat(StrEnum):
    """Output formats of ``mlwarden scan``."""

    table = "table"
    json = "json"
    sarif = "sarif"


def scan_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Model files or folders (walked) to scan.", exists=True, metavar="PATH"
        ),
    ],
    output: Annotated[
        ScanFormat, typer.Option("--format", help="table (default), json or sarif.")
    ] = ScanFormat.table,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="YAML: allow_globals to add, archive limits.", exists=True),
    ] = None,
) -> int:
    """Scan model files by content, never running them; exit 1 if any file is unsafe.

    Formats are recognised by their bytes, whatever the extension: pickles (protocols 0-5),
    joblib, torch checkpoints, NumPy, ONNX, skops, safetensors, Keras, zip and tar archives.
    """
    from mlwarden._version import __version__
    from mlwarden.models import ScanPolicy, load_scan_policy, scan_paths, scan_sarif

    rules = load_scan_policy(policy) if policy is not None else ScanPolicy()
    reports = scan_paths(paths, rules)
    if output is ScanFormat.json:
        print(json.dumps([r.summary() for r in reports], indent=2))
    elif output is ScanFormat.sarif:
        print(json.dumps(scan_sarif(reports, __version__), indent=2))
    else:
        table = Table(title="scan", title_justify="left")
        for column in ("file", "format", "verdict", "findings"):
            table.add_column(column, overflow="fold")
        for report in reports:
            lines = [
                f"[{f.severity}] {f.member + ': ' if f.member else ''}{f.message}"
                + (f" (byte {f.offset}, {f.opcode})" if f.offset is not None and f.opcode else "")
                for f in report.findings
                if f.unsafe
            ]
            verdict = "[green]safe[/]" if report.safe else "[red]UNSAFE[/]"
            table.add_row(report.file, report.format, verdict, "\n".join(lines) or "-")
        out.print(table)
        unsafe = sum(not r.safe for r in reports)
        out.print(f"{len(reports)} file(s) scanned, {unsafe} unsafe")
    return EXIT_UNSAFE if any(not r.safe for r in reports) else 0
