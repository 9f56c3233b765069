"""What ``lineage`` and ``decisions`` verify and checkpoint share: trust, exit codes, export."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlwarden.errors import SignatureError
from mlwarden.lineage import ChainReport

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from mlwarden.lineage import SignatureTrust

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


class _PinnedKey:
    """Trusts one ed25519 public key: the one the store's signatures are checked against today.

    Stands in for the trust policy of pinned keys kept outside the store (``check`` is the
    same contract).
    """

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key
        self._hex = key.public_bytes_raw().hex()

    def check(self, signer_hex: str, message: bytes, signature_hex: str, *, what: str) -> None:
        """Raise ``SignatureError`` unless the pinned key signed ``message``."""
        from cryptography.exceptions import InvalidSignature

        if signer_hex != self._hex:
            raise SignatureError(
                f"{what} is signed by key {signer_hex[:16]}..., which is not trusted "
                f"(trusted: {self._hex[:16]}...)"
            )
        try:
            self._key.verify(bytes.fromhex(signature_hex), message)
        except (InvalidSignature, ValueError) as exc:
            raise SignatureError(f"{what}: the signature does not verify") from exc


def store_trust(store: Path) -> SignatureTrust | None:
    """The trust that checkpoint signatures are checked against; None if the store has no key.

    Raises
    ------
    SignatureError
        If the public key file is there but unreadable.
    """
    from mlwarden.models._signing import load_public_key

    keys = store / "keys"
    if not (keys / "signing.pub").exists():
        return None
    return _PinnedKey(load_public_key(keys))


def exit_code(report: ChainReport) -> int:
    """0 when everything holds, 5 when only signatures failed, 4 for any integrity failure."""
    if report.ok:
        return 0
    return 5 if report.signature_failed else 4
