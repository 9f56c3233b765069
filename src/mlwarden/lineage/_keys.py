"""Signing keys kept OUTSIDE the store, and the trust policy that says which public keys count.

Anyone who can write the store can rewrite its records and artifacts, so nothing the store holds
may decide what is genuine. The private key lives in a key directory of the user (or is given by
the environment in CI); verification trusts only public keys pinned in a trust policy file given
from outside. Rotation and revocation are signed records in the store's chain: trust extends
from a pinned key along valid rotations, the way TUF root metadata rotates.

Precedence for the signing key: ``$MLWARDEN_SIGNING_KEY`` (PEM text), then
``$MLWARDEN_SIGNING_KEY_FILE`` (a PEM file), then ``signing.key`` in the key directory (created,
and its public key pinned there, on first use). An environment key never writes the key directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlwarden.errors import SignatureError, UntrustedKeyError
from mlwarden.lineage._hashing import canonical_json

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from mlwarden.lineage._records import Record

KEY_DIR_ENV = "MLWARDEN_KEY_DIR"
TRUST_ENV = "MLWARDEN_TRUST"
KEY_ENV = "MLWARDEN_SIGNING_KEY"
KEY_FILE_ENV = "MLWARDEN_SIGNING_KEY_FILE"
#: The current private key in a key directory, its public half, and the trust policy file.
PRIVATE_KEY_FILE = "signing.key"
PUBLIC_KEY_FILE = "signing.pub"
TRUST_FILE = "trust.json"
TRUST_FORMAT = 1
#: Format of the claim a ``key_rotated`` / ``key_revoked`` record signs.
KEY_EVENT_FORMAT = 1
_HEX64 = r"^[0-9a-f]{64}$"


def default_key_dir() -> Path:
    """``$MLWARDEN_KEY_DIR``, else ``mlwarden/keys`` in the user's config dir (never the store)."""
    given = os.environ.get(KEY_DIR_ENV)
    if given:
        return Path(given).expanduser()
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "mlwarden" / "keys"
    config = os.environ.get("XDG_CONFIG_HOME")
    base = Path(config).expanduser() if config else Path.home() / ".config"
    return base / "mlwarden" / "keys"


def key_id(public_key_hex: str) -> str:
    """First 16 hex of the sha256 of the raw public key: a short, stable name for a key."""
    try:
        raw = bytes.fromhex(public_key_hex)
    except ValueError:
        raw = public_key_hex.encode()
    return hashlib.sha256(raw).hexdigest()[:16]


class Signer:
    """An ed25519 private key; ``source`` says where it came from (a file or an env variable)."""

    def __init__(self, private_key: Ed25519PrivateKey, *, source: str = "memory") -> None:
        self._key = private_key
        self.source = source
        #: The key directory this call created the key in (and pinned it), else None.
        self.created_in: Path | None = None
        #: The key directory the key lives in (None for an environment or in-memory key): where
        #: the keys that go with it, such as the model-signing key, are kept too.
        self.key_dir: Path | None = None

    @classmethod
    def generate(cls) -> Signer:
        """A fresh key held in memory only."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, data: bytes, *, source: str) -> Signer:
        """The key a PEM (PKCS#8) text holds; anything else is a ``SignatureError`` naming it."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = _parse_pem(data, source=source, private=True)
        if not isinstance(key, Ed25519PrivateKey):
            raise SignatureError(f"{source} is not an ed25519 private key")
        return cls(key, source=source)

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        """Load a PEM private key file."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SignatureError(f"cannot read the private key {path}: {exc.strerror}") from exc
        return cls.from_pem(data, source=str(path))

    @classmethod
    def from_environment(cls) -> Signer | None:
        """The key ``$MLWARDEN_SIGNING_KEY`` (PEM text) or ``$MLWARDEN_SIGNING_KEY_FILE`` gives."""
        text = os.environ.get(KEY_ENV)
        if text:
            return cls.from_pem(text.encode(), source=f"${KEY_ENV}")
        path = os.environ.get(KEY_FILE_ENV)
        if path:
            signer = cls.from_file(Path(path).expanduser())
            signer.source = f"${KEY_FILE_ENV} ({path})"
            return signer
        return None

    @classmethod
    def existing(cls, key_dir: Path | None = None) -> Signer | None:
        """The environment's key, else the key dir's; None rather than creating one."""
        given = cls.from_environment()
        if given is not None:
            return given
        folder = key_dir if key_dir is not None else default_key_dir()
        path = folder / PRIVATE_KEY_FILE
        if not path.exists():
            return None
        signer = cls.from_file(path)
        signer.key_dir = folder
        return signer

    @classmethod
    def load_or_create(cls, key_dir: Path | None = None) -> Signer:
        """The environment's key, else the key dir's, else a new one created and pinned there.

        ``key_dir`` None means :func:`default_key_dir`. A key created here is the only key ever
        pinned automatically: you trust what you sign.
        """
        found = cls.existing(key_dir)
        if found is not None:
            return found
        folder = key_dir if key_dir is not None else default_key_dir()
        path = folder / PRIVATE_KEY_FILE
        signer = cls.generate()
        try:
            written = signer.save(folder)
        except FileExistsError:  # another process created it first: use theirs
            theirs = cls.from_file(path)
            theirs.key_dir = folder
            return theirs
        signer.created_in = signer.key_dir = folder
        TrustPolicy.of_key_dir(folder).pin(signer.public_key_hex, note="created here")
        signer.source = str(written)
        return signer

    def save(self, key_dir: Path, name: str = PRIVATE_KEY_FILE) -> Path:
        """Write the private key (mode 0600, never overwriting) and its public PEM beside it."""
        ensure_key_dir(key_dir)
        path = key_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.private_pem())
            fh.flush()
            os.fsync(fh.fileno())
        path.with_suffix(".pub").write_bytes(self.public_pem())
        return path

    @property
    def public_key_hex(self) -> str:
        """The raw 32-byte public key, hex: what a manifest or record names as its signer."""
        return self._key.public_key().public_bytes_raw().hex()

    @property
    def key_id(self) -> str:
        """First 16 hex of the sha256 of the raw public key."""
        return key_id(self.public_key_hex)

    def sign(self, message: bytes) -> str:
        """Hex ed25519 signature of ``message``."""
        return self._key.sign(message).hex()

    def public_pem(self) -> bytes:
        """The public key as PEM (SubjectPublicKeyInfo)."""
        from cryptography.hazmat.primitives import serialization

        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (for a file of mode 0600)."""
        from cryptography.hazmat.primitives import serialization

        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def ensure_key_dir(key_dir: Path) -> None:
    """Create ``key_dir`` with mode 0700 (tightening an existing one that others can read)."""
    try:
        key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.name == "posix" and key_dir.stat().st_mode & 0o077:
            key_dir.chmod(0o700)
    except OSError as exc:
        raise SignatureError(f"cannot create the key directory {key_dir}: {exc.strerror}") from exc


def public_key_hex(text: str) -> str:
    """A public key given as 64 hex characters or as PEM text, as raw hex."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    stripped = text.strip()
    if len(stripped) == 64 and all(c in "0123456789abcdefABCDEF" for c in stripped):
        return stripped.lower()
    key = _parse_pem(stripped.encode(), source="the given public key", private=False)
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError("the given public key is not an ed25519 key")
    return key.public_bytes_raw().hex()


def _parse_pem(data: bytes, *, source: str, private: bool, kind: str = "ed25519") -> object:
    """The key a PEM text holds; one that does not parse is a ``SignatureError``, not a crash."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    what = "private" if private else "public"
    try:
        if private:
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        reason = str(exc).split(". ")[0].splitlines()[0] if str(exc) else type(exc).__name__
        raise SignatureError(
            f"{source} is not a readable PEM {kind} {what} key ({reason}); expected the "
            f"-----BEGIN {'PRIVATE' if private else 'PUBLIC'} KEY----- text mlwarden writes"
        ) from exc


def _verifies(public_hex: str, message: bytes, signature_hex: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key: Ed25519PublicKey = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))
        key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


# -- the trust policy -------------------------------------------------------------------------


class PinnedKey(BaseModel):
    """A public key the user trusts; ``exposed`` marks one that once lay inside a store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    public_key: str = Field(pattern=_HEX64)
    note: str = ""
    added_at: datetime
    exposed: bool = False


class RevokedKey(BaseModel):
    """A public key refused everywhere, whatever any store says."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    public_key: str = Field(pattern=_HEX64)
    reason: str = ""
    revoked_at: datetime


class TrustFile(BaseModel):
    """The JSON of a trust policy file (format 1)."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
    pinned: list[PinnedKey] = []
    revoked: list[RevokedKey] = []


class KeyEvent(BaseModel):
    """A valid rotation or revocation found in a store's chain."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["key_rotated", "key_revoked"]
    seq: int
    key: str  # the key rotated away from, or revoked
    new_key: str | None = None
    reason: str = ""


def rotation_claim(old_hex: str, new_hex: str) -> dict[str, Any]:
    """What a ``key_rotated`` record signs with the OLD key."""
    return {"format": KEY_EVENT_FORMAT, "event": "key_rotated", "key": old_hex, "new_key": new_hex}


def revocation_claim(key_hex: str, reason: str) -> dict[str, Any]:
    """What a ``key_revoked`` record signs (with a key trusted at that point of the chain)."""
    return {"format": KEY_EVENT_FORMAT, "event": "key_revoked", "key": key_hex, "reason": reason}


def signed_event(claim: dict[str, Any], signer: Signer) -> dict[str, Any]:
    """A record payload: the claim, who signs it and the signature over its canonical JSON."""
    signature = signer.sign(canonical_json(claim))
    return {**claim, "signer": signer.public_key_hex, "signature": signature}


class TrustPolicy:
    """Pinned and revoked public keys from a file outside the store, plus a chain's rotations.

    ``check`` accepts a signature only when its key is pinned (or reached from a pinned key by
    valid rotations recorded in the chain given to :meth:`with_chain`), is not revoked, and the
    signature verifies.
    """

    def __init__(self, path: Path, data: TrustFile | None = None) -> None:
        self.path = path
        self.data = data if data is not None else TrustFile()
        self.events: list[KeyEvent] = []
        #: Key-event records of the chain that did not verify (forged or unsigned), as messages.
        self.problems: list[str] = []
        self._rotated_in: dict[str, int] = {}  # new key -> seq of the rotation that admitted it
        self._retired: dict[str, tuple[int, str]] = {}  # key -> (seq, "revoked"/"rotated")

    @classmethod
    def load(cls, path: Path | None = None) -> TrustPolicy:
        """The policy at ``path``, ``$MLWARDEN_TRUST``, else ``<default key dir>/trust.json``.

        A missing default file is an empty policy (nothing trusted); a missing file named
        explicitly, or a corrupt one, is a ``SignatureError``.
        """
        explicit = path is not None or bool(os.environ.get(TRUST_ENV))
        if path is None:
            given = os.environ.get(TRUST_ENV)
            path = Path(given).expanduser() if given else default_key_dir() / TRUST_FILE
        if not path.exists():
            if explicit:
                raise SignatureError(
                    f"trust policy {path} does not exist; create it by pinning a key: "
                    f"mlwarden signing trust PUBFILE|HEX --trust {path}"
                )
            return cls(path)
        try:
            data = TrustFile.model_validate_json(path.read_bytes())
        except OSError as exc:
            raise SignatureError(f"cannot read the trust policy {path}: {exc.strerror}") from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "the file"
            raise SignatureError(
                f"trust policy {path} is corrupt ({where}: {first['msg']}); expected JSON "
                f'{{"format": {TRUST_FORMAT}, "pinned": [...], "revoked": [...]}} as mlwarden '
                "signing trust writes it"
            ) from exc
        return cls(path, data)

    @classmethod
    def of_key_dir(cls, key_dir: Path) -> TrustPolicy:
        """The trust policy of a key dir (``trust.json``), empty when there is none yet."""
        path = key_dir / TRUST_FILE
        return cls.load(path) if path.exists() else cls(path)

    # -- what the file says ------------------------------------------------------------------

    @property
    def pinned(self) -> dict[str, PinnedKey]:
        """Pinned keys by raw public key hex."""
        return {k.public_key: k for k in self.data.pinned}

    @property
    def revoked(self) -> dict[str, RevokedKey]:
        """Keys the policy file revokes, by raw public key hex."""
        return {k.public_key: k for k in self.data.revoked}

    def pin(self, public_hex: str, *, note: str = "", exposed: bool = False) -> bool:
        """Pin a key and save the file; False when it was pinned already."""
        if public_hex in self.pinned:
            return False
        key = PinnedKey(
            public_key=public_hex, note=note, added_at=datetime.now(UTC), exposed=exposed
        )
        self.data.pinned.append(key)
        self.save()
        return True

    def revoke(self, public_hex: str, reason: str) -> None:
        """Refuse a key everywhere this policy is used (kept pinned, for the record)."""
        if public_hex not in self.revoked:
            revoked = RevokedKey(public_key=public_hex, reason=reason, revoked_at=datetime.now(UTC))
            self.data.revoked.append(revoked)
            self.save()

    def save(self) -> None:
        """Write the file atomically (a reader sees the old policy or the new one)."""
        ensure_key_dir(self.path.parent)
        text = json.dumps(self.data.model_dump(mode="json"), indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".trust-")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    # -- the chain's rotations and revocations -----------------------------------------------

    def with_chain(self, records: Iterable[Record]) -> TrustPolicy:
        """This policy extended by the valid ``key_rotated``/``key_revoked`` records given.

        Records are taken in chain order; each must be signed by a key trusted at that point,
        else it is ignored and listed in ``problems`` (a forged rotation trusts nothing).
        """
        extended = TrustPolicy(self.path, self.data)
        for record in sorted(records, key=lambda r: r.seq):
            extended._apply(record)
        return extended

    def _apply(self, record: Record) -> None:
        payload = record.payload
        signer = str(payload.get("signer", ""))
        if record.kind == "key_rotated":
            claim = rotation_claim(str(payload.get("key", "")), str(payload.get("new_key", "")))
        elif record.kind == "key_revoked":
            claim = revocation_claim(str(payload.get("key", "")), str(payload.get("reason", "")))
        else:
            return
        why = self._refusal(signer, canonical_json(claim), str(payload.get("signature", "")),
                            seq=record.seq)  # fmt: skip
        if why is None and record.kind == "key_rotated" and signer != claim["key"]:
            why = "a rotation must be signed by the key it rotates away from"
        if why is not None:
            self.problems.append(f"{record.kind} record {record.seq} ignored: {why}")
            return
        if record.kind == "key_rotated":
            self._retired.setdefault(claim["key"], (record.seq, "rotated away"))
            self._rotated_in.setdefault(claim["new_key"], record.seq)
            new = claim["new_key"]
        else:
            self._retired.setdefault(claim["key"], (record.seq, "revoked"))
            new = None
        reason = str(payload.get("reason", ""))
        self.events.append(
            KeyEvent(kind=record.kind, seq=record.seq, key=claim["key"], new_key=new, reason=reason)
        )

    # -- checking ----------------------------------------------------------------------------

    def is_trusted(self, signer_hex: str, *, at_seq: int | None = None) -> bool:
        """Whether a signature by ``signer_hex`` (made at chain position ``at_seq``) may count."""
        return self._untrusted_reason(signer_hex, at_seq) is None

    def _untrusted_reason(self, signer_hex: str, at_seq: int | None) -> str | None:
        kid = key_id(signer_hex)
        if signer_hex in self.revoked:
            why = self.revoked[signer_hex].reason
            return f"key {kid} is revoked by the trust policy {self.path} ({why or 'no reason'})"
        retired = self._retired.get(signer_hex)
        if retired is not None and (at_seq is None or at_seq > retired[0]):
            return f"key {kid} was {retired[1]} by record {retired[0]} of the chain"
        if signer_hex in self.pinned:
            return None
        admitted = self._rotated_in.get(signer_hex)
        if admitted is not None and (at_seq is None or at_seq > admitted):
            return None
        return (
            f"key {kid} is not pinned in the trust policy {self.path}; if you trust it, pin it: "
            f"mlwarden signing trust {signer_hex} --trust {self.path}"
        )

    def _refusal(
        self, signer_hex: str, message: bytes, signature_hex: str, *, seq: int | None
    ) -> str | None:
        untrusted = self._untrusted_reason(signer_hex, seq)
        if untrusted is not None:
            return untrusted
        if not _verifies(signer_hex, message, signature_hex):
            return f"the signature by key {key_id(signer_hex)} does not verify"
        return None

    def check(
        self,
        signer_hex: str,
        message: bytes,
        signature_hex: str,
        *,
        what: str,
        at_seq: int | None = None,
    ) -> None:
        """Raise unless ``signer_hex`` is trusted (at ``at_seq``) and the signature verifies.

        ``UntrustedKeyError`` for a key not pinned, revoked or rotated away; ``SignatureError``
        for a signature that does not verify. The message is one line naming ``what``.
        """
        untrusted = self._untrusted_reason(signer_hex, at_seq)
        if untrusted is not None:
            raise UntrustedKeyError(f"{what} refused: {untrusted}")
        if not _verifies(signer_hex, message, signature_hex):
            raise SignatureError(
                f"{what} refused: signature does not verify (key {key_id(signer_hex)}, trust "
                f"policy {self.path}): the signed content was changed"
            )

    def exposed(self, signer_hex: str) -> bool:
        """Whether the key was pinned by a migration: it once lay inside a store."""
        found = self.pinned.get(signer_hex)
        return found is not None and found.exposed
