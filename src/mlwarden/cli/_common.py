"""What every command shares: the consoles, the store options, and opening the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mlwarden.lineage import LineageStore

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

StoreOpt = Annotated[
    Path,
    typer.Option(
        "--store",
        envvar="MLWARDEN_STORE",
        help="Folder of the embedded store (lineage.db, artifacts/, keys/, reports/).",
    ),
]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db-url",
        envvar="MLWARDEN_DB_URL",
        help="SQLAlchemy URL to keep records in another database (e.g. PostgreSQL).",
    ),
]
DEFAULT_STORE = Path(".mlwarden")


OPENED: list[LineageStore] = []


def score(value: object) -> str:
    """A score to four decimals, or ``n/a`` where it is undefined (stored as null)."""
    return f"{value:.4f}" if isinstance(value, int | float) else "n/a"


def open_store(store: Path, db_url: str | None) -> LineageStore:
    """Open the store; ``main`` closes it when the command ends, however it ends."""
    opened = LineageStore(store, url=db_url)
    OPENED.append(opened)
    return opened
