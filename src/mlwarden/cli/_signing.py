"""``mlwarden signing``: the signing key outside the store, and the trust policy of pinned keys.

A group of its own because ``mlwarden keys`` manages the server's API keys, whose ids are also
16 hex characters: ``keys revoke ID`` could not tell the two apart.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from mlwarden.lineage import TrustPolicy

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

signing_app = typer.Typer(
    help=(
        "The signing key (kept outside the store) and the trust policy of pinned public keys "
        "that verification trusts."
    ),
    no_args_is_help=True,
)

TrustOpt = Annotated[
    Path | None,
    typer.Option(
        "--trust",
        help=(
            "Trust policy (JSON of pinned public keys) to verify with; overrides "
            "$MLWARDEN_TRUST, default <key dir>/trust.json."
        ),
    ),
]
KeyDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--key-dir",
        help="Key directory; default $MLWARDEN_KEY_DIR, else ~/.config/mlwarden/keys.",
    ),
]
StoreOpt = Annotated[Path, typer.Option("--store", envvar="MLWARDEN_STORE")]
DbOpt = Annotated[str | None, typer.Option("--db-url", envvar="MLWARDEN_DB_URL")]


def print_warnings(messages: list[str]) -> None:
    """Doubts about a signature that verified, one line each on stderr."""
    for message in messages:
        err.print(f"[yellow]warning:[/] {message}", soft_wrap=True)


@signing_app.command("show")
def signing_show(key_dir: KeyDirOpt = None, trust: TrustOpt = None) -> int:
    """Print the key dir, the signing key's id and source, the trust policy and its keys."""
    from mlwarden.lineage import KEY_ENV, KEY_FILE_ENV, Signer, default_key_dir, key_id

    folder = key_dir if key_dir is not None else default_key_dir()
    out.print(f"key dir: {folder}")
    signer = Signer.from_environment()
    if signer is None and (folder / "signing.key").exists():
        signer = Signer.from_file(folder / "signing.key")
    if signer is None:
        out.print("signing key: none yet (created on first use)")
    else:
        out.print(f"signing key: {signer.key_id} ({signer.source})")
    if os.environ.get(KEY_ENV) or os.environ.get(KEY_FILE_ENV):
        out.print("the environment gives the signing key: the key dir's key is not used")
    policy = _load_policy(trust, key_dir)
    out.print(f"trust policy: {policy.path}{'' if policy.path.exists() else ' (none yet)'}")
    table = Table(title="pinned keys", title_justify="left")
    for column in ("key id", "public key", "state", "note"):
        table.add_column(column)
    for pinned in policy.data.pinned:
        state = "revoked" if pinned.public_key in policy.revoked else "trusted"
        if pinned.exposed and state == "trusted":
            state = "trusted (was in a store)"
        table.add_row(key_id(pinned.public_key), pinned.public_key, state, pinned.note)
    for revoked in policy.data.revoked:
        if revoked.public_key not in policy.pinned:
            table.add_row(key_id(revoked.public_key), revoked.public_key, "revoked", revoked.reason)
    out.print(table)
    return 0


def _policy_path(key_dir: Path | None) -> Path | None:
    """The trust file of an explicitly given key dir; None: ``TrustPolicy.load``'s own default."""
    return key_dir / "trust.json" if key_dir is not None else None


def _load_policy(trust: Path | None, key_dir: Path | None) -> TrustPolicy:
    """``--trust`` (must exist), else the ``--key-dir``'s trust.json, else the default policy."""
    from mlwarden.lineage import TrustPolicy

    if trust is None and key_dir is not None:
        return TrustPolicy.of_key_dir(key_dir)
    return TrustPolicy.load(trust)


@signing_app.command("trust")
def signing_trust(
    key: Annotated[str, typer.Argument(help="A public key: PEM file, or 64 hex characters.")],
    note: Annotated[str, typer.Option("--note", help="Why it is trusted, whose it is.")] = "",
    trust: TrustOpt = None,
    key_dir: KeyDirOpt = None,
) -> int:
    """Pin a public key in the trust policy: signatures by it will verify."""
    from mlwarden.errors import SignatureError
    from mlwarden.lineage import TrustPolicy, key_id, public_key_hex

    path = Path(key)
    if path.is_file():
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise SignatureError(f"cannot read the public key file {path}: {exc}") from exc
    else:
        text = key
    public = public_key_hex(text)
    target = trust if trust is not None else _policy_path(key_dir)
    if target is None:
        from mlwarden.lineage import TRUST_ENV, default_key_dir

        given = os.environ.get(TRUST_ENV)
        target = Path(given) if given else default_key_dir() / "trust.json"
    policy = TrustPolicy.load(target) if target.exists() else TrustPolicy(target)
    added = policy.pin(public, note=note)
    verb = "pinned" if added else "already pinned"
    out.print(f"{verb} key {key_id(public)} in {policy.path}")
    return 0


@signing_app.command("export-public")
def signing_export_public(key_dir: KeyDirOpt = None) -> int:
    """Print the signing key's public half as PEM (to pin it elsewhere)."""
    from mlwarden.errors import SignatureError
    from mlwarden.lineage import Signer, default_key_dir

    folder = key_dir if key_dir is not None else default_key_dir()
    signer = Signer.from_environment()
    if signer is None:
        if not (folder / "signing.key").exists():
            raise SignatureError(f"no signing key in {folder} yet: it is created on first use")
        signer = Signer.from_file(folder / "signing.key")
    out.print(signer.public_pem().decode(), end="")
    return 0


@signing_app.command("migrate")
def signing_migrate(store: StoreOpt = Path(".mlwarden"), key_dir: KeyDirOpt = None) -> int:
    """Move an old store's private key (<store>/keys/signing.key) into the key dir and pin it."""
    from mlwarden.lineage import migrate_store_key

    signer = migrate_store_key(store, key_dir)
    out.print(
        f"moved key {signer.key_id} out of {store} to {signer.source} and pinned it; it was "
        f"readable to whoever could write the store: rotate it with "
        f"mlwarden signing rotate --store {store}"
    )
    return 0


@signing_app.command("rotate")
def signing_rotate(
    store: StoreOpt = Path(".mlwarden"), db_url: DbOpt = None, key_dir: KeyDirOpt = None
) -> int:
    """Make a new signing key; the store's chain records the change, signed by the old key."""
    from mlwarden.lineage import LineageStore, rotate_key

    lineage = LineageStore(store, url=db_url)
    try:
        old, new = rotate_key(lineage, key_dir)
    finally:
        lineage.close()
    out.print(
        f"rotated {old.key_id} -> {new.key_id} ({new.source}); the old key signs nothing new. "
        f"Verifiers that pin {old.key_id} trust {new.key_id} through this store's record"
    )
    return 0


@signing_app.command("revoke")
def signing_revoke(
    key: Annotated[str, typer.Argument(help="Key id (16 hex), public key hex, or PEM file.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded, signed).")],
    store: StoreOpt = Path(".mlwarden"),
    db_url: DbOpt = None,
    key_dir: KeyDirOpt = None,
    trust: TrustOpt = None,
) -> int:
    """Revoke a signing key: a signed record in the store and an entry in the trust policy."""
    from mlwarden.lineage import (
        LineageStore,
        Signer,
        key_id,
        known_key,
        refuse_key_in_store,
        revoke_key,
    )

    refuse_key_in_store(store)
    policy = _load_policy(trust, key_dir)
    lineage = LineageStore(store, url=db_url)
    try:
        public = known_key(lineage, policy, key)
        revoke_key(lineage, public, reason, Signer.load_or_create(key_dir), policy)
    finally:
        lineage.close()
    out.print(
        f"revoked {key_id(public)}: recorded in {store} and in {policy.path}; signatures it "
        "makes from now on are refused"
    )
    return 0
