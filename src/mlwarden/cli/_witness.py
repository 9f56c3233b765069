"""What ``lineage`` and ``decisions`` verify and checkpoint share: trust, exit codes, export."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlwarden.lineage import ChainReport

if TYPE_CHECKING:
    from mlwarden.lineage import LineageStore, TrustPolicy

WitnessOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--witness",
        help="A checkpoint exported earlier (`checkpoint --export`) and kept outside the store: "
        "the chain must still hold what it witnessed. Repeatable.",
    ),
]
ExportOpt = Annotated[
    Path,
    typer.Option("--export", help="Write the newest signed checkpoint to this file (a witness)."),
]


def store_trust(lineage: LineageStore | None, trust: Path | None) -> TrustPolicy:
    """The trust policy checkpoint signatures are checked against: pinned outside the store.

    ``trust`` (``--trust``), else ``$MLWARDEN_TRUST``, else the key dir's ``trust.json``,
    extended along the store's signed key rotations and revocations. Nothing in the store is
    trusted on its own.
    """
    from mlwarden.lineage import TrustPolicy, store_policy

    policy = TrustPolicy.load(trust)
    return store_policy(lineage, policy) if lineage is not None else policy


def exit_code(report: ChainReport) -> int:
    """0 when everything holds, 5 when only signatures failed, 4 for any integrity failure."""
    if report.ok:
        return 0
    return 5 if report.signature_failed else 4
