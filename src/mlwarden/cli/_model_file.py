"""A model file given on the command line: the scan policy it is checked under, and the refusal
printed when the scan finds it unsafe (``mlwarden import`` and ``audit --model FILE``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from mlwarden.cli._scan import EXIT_UNSAFE

if TYPE_CHECKING:
    from mlwarden.models import ScanPolicy, ScanReport

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

#: Extensions that name a model file, so ``--model model.pkl`` that does not exist is reported
#: as a missing file rather than as an unregistered model name.
MODEL_SUFFIXES = frozenset(
    {".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".ckpt", ".onnx", ".skops", ".npy",
     ".npz", ".safetensors", ".h5", ".keras"}
)  # fmt: skip


def scan_policy_of(path: Path | None) -> ScanPolicy:
    """The scan policy in ``path`` (allow_globals, limits), or the default one."""
    from mlwarden.models import ScanPolicy, load_scan_policy

    return load_scan_policy(path) if path is not None else ScanPolicy()


def refuse_unsafe(report: ScanReport) -> int:
    """Print why an unsafe file was not loaded (every finding, then one line); the exit code."""
    from mlwarden.models import refusal

    for f in report.findings:
        if f.unsafe:
            where = f" (byte {f.offset}, {f.opcode})" if f.offset is not None and f.opcode else ""
            member = f"{f.member}: " if f.member else ""
            out.print(
                f"  [red]{f.severity}[/] {f.rule}: {member}{f.message}{where}", soft_wrap=True
            )
    err.print(f"[red]refused:[/] {refusal(report)}", soft_wrap=True)
    return EXIT_UNSAFE
