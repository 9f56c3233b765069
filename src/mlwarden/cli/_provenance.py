"""``mlwarden models provenance`` and ``models export``: provenance a consumer can verify.

``provenance`` prints a version's in-toto SLSA statement once its signatures verify; ``export``
writes the model with its OpenSSF model-signing signature, statement and public key, and the
``model_signing verify key`` command that checks it without mlwarden.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from mlwarden.cli._signing import DbOpt, StoreOpt, TrustOpt, print_warnings

if TYPE_CHECKING:
    from mlwarden.models import ModelRegistry

out = Console(highlight=False)


@contextmanager
def _registry(store: Path, db_url: str | None, trust: Path | None) -> Iterator[ModelRegistry]:
    """The store's registry under the given trust policy; the store is closed afterwards."""
    from mlwarden.lineage import LineageStore, TrustPolicy
    from mlwarden.models import ModelRegistry

    lineage = LineageStore(store, url=db_url)
    try:
        yield ModelRegistry(lineage, TrustPolicy.load(trust))
    finally:
        lineage.close()


RefArg = Annotated[str, typer.Argument(help="NAME, NAME@latest, NAME@N or NAME@STAGE")]


def models_provenance(
    ref: RefArg,
    envelope: Annotated[
        bool,
        typer.Option("--envelope", help="Print the signed DSSE envelope (one JSON line)."),
    ] = False,
    store: StoreOpt = Path(".mlwarden"),
    db_url: DbOpt = None,
    trust: TrustOpt = None,
) -> None:
    """Verify a version and its signed provenance, then print the in-toto SLSA statement."""
    from mlwarden.models import read_provenance

    with _registry(store, db_url, trust) as registry:
        found = read_provenance(registry, ref)
        print_warnings(registry.warnings(found.version))
    if envelope:
        typer.echo(found.envelope.decode().rstrip("\n"))
    else:
        out.print_json(json.dumps(found.statement))


def models_export(
    ref: RefArg,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Folder to write into (new or empty).")
    ],
    store: StoreOpt = Path(".mlwarden"),
    db_url: DbOpt = None,
    trust: TrustOpt = None,
) -> None:
    """Write a verified version's model, model.sig, provenance and public key for others."""
    from mlwarden.models import export_version

    with _registry(store, db_url, trust) as registry:
        exported = export_version(registry, ref, output)
        print_warnings(registry.warnings(exported.provenance.version))
    out.print(f"exported [bold]{exported.provenance.version.ref}[/] (verified):")
    for path in exported.files:
        out.print(f"  {path}", soft_wrap=True)
    out.print("verify it without mlwarden (pip install model-signing):")
    typer.echo(exported.command)


def add_provenance_commands(models_app: typer.Typer) -> None:
    """Register ``provenance`` and ``export`` under ``mlwarden models``."""
    models_app.command("provenance")(models_provenance)
    models_app.command("export")(models_export)
