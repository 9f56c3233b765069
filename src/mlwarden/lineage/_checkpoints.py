"""Signed checkpoints of a hash chain, the CHECKPOINT file beside it, and witnesses.

A checkpoint names a chain (the hash of its first record), a position in it and the chain's
hash there, signed by a key kept outside the store. Appended to the chain and written to a file
beside it, it catches what the chain alone cannot: records cut off the end with ``HEAD``
rewritten. Exported to a witness (a file kept elsewhere), it catches even a rewrite by someone
holding the key: the chain must still hold the witnessed hash at the witnessed position. The
idea follows the signed tree heads of Certificate Transparency (RFC 9162) for a linear chain.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from mlwarden.errors import IntegrityError, SignatureError
from mlwarden.lineage._chain import ChainWalk, ProblemList
from mlwarden.lineage._hashing import canonical_json

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "CheckpointSet",
    "CheckpointSigner",
    "SignatureTrust",
    "check_chain_checkpoints",
    "make_checkpoint",
    "read_checkpoint_file",
    "write_checkpoint_file",
]

CHECKPOINT_FORMAT = 1
_SHA256 = r"^[0-9a-f]{64}$"
_HEX = r"^[0-9a-f]+$"
_MAX_FILE = 1 << 20


class CheckpointSigner(Protocol):
    """What signs checkpoints: ``mlwarden.models.Signer`` (or the key store's) fits."""

    @property
    def public_key_hex(self) -> str:
        """The signer's raw ed25519 public key, hex."""
        ...

    def sign(self, message: bytes) -> str:
        """Hex ed25519 signature of ``message``."""
        ...


class SignatureTrust(Protocol):
    """Who is trusted to sign: a trust policy of pinned public keys kept outside the store."""

    def check(
        self,
        signer_hex: str,
        message: bytes,
        signature_hex: str,
        *,
        what: str,
        at_seq: int | None = None,
    ) -> None:
        """Raise ``SignatureError`` unless ``signer_hex`` is trusted and the signature holds."""
        ...


class Checkpoint(BaseModel):
    """A signed statement: chain ``chain_id`` held hash ``hash`` at position ``seq``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = CHECKPOINT_FORMAT
    chain: str = Field(min_length=1, max_length=64)
    chain_id: str = Field(pattern=_SHA256)
    seq: int = Field(ge=1)
    hash: str = Field(pattern=_SHA256)
    created_at: AwareDatetime
    signer: str = Field(pattern=_HEX, min_length=64, max_length=64)
    signature: str = Field(pattern=_HEX, max_length=256)

    def message(self) -> bytes:
        """The bytes the signature covers: canonical JSON of every other field."""
        return canonical_json(self.model_dump(mode="json", exclude={"signature"}))

    def to_json(self) -> dict[str, Any]:
        """The stored form (a record payload, an entry of a checkpoint file)."""
        return self.model_dump(mode="json")

    def check_signature(
        self, trust: SignatureTrust, what: str, *, positioned: bool = False
    ) -> None:
        """Raise ``SignatureError`` unless a trusted key made this checkpoint's signature.

        ``positioned``: the chain is the one whose key rotations and revocations the trust
        policy follows, so the key is judged as trusted when the checkpoint was made (a witness
        signed before a rotation stays valid after it).
        """
        at_seq = self.seq + 1 if positioned else None
        trust.check(self.signer, self.message(), self.signature, what=what, at_seq=at_seq)


class CheckpointSet(BaseModel):
    """The newest checkpoint of each chain of a store: a CHECKPOINT file or a witness."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = CHECKPOINT_FORMAT
    checkpoints: list[Checkpoint]

    def of(self, chain: str) -> Checkpoint | None:
        """The checkpoint of ``chain``, if this set holds one."""
        return next((c for c in self.checkpoints if c.chain == chain), None)


def make_checkpoint(
    signer: CheckpointSigner,
    *,
    chain: str,
    chain_id: str,
    seq: int,
    digest: str,
    created_at: datetime | None = None,
) -> Checkpoint:
    """Sign that chain ``chain_id`` holds ``digest`` at ``seq``."""
    draft = Checkpoint(
        chain=chain,
        chain_id=chain_id,
        seq=seq,
        hash=digest,
        created_at=created_at or datetime.now(UTC),
        signer=signer.public_key_hex,
        signature="00",
    )
    return draft.model_copy(update={"signature": signer.sign(draft.message())})


def parse_checkpoint(payload: object, where: str) -> Checkpoint:
    """A checkpoint from its stored JSON; anything else is an ``IntegrityError``."""
    try:
        checkpoint = Checkpoint.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "checkpoint"
        raise IntegrityError(f"{where} is not a valid checkpoint: {field}: {first['msg']}") from exc
    if checkpoint.format != CHECKPOINT_FORMAT:
        raise IntegrityError(
            f"{where} has checkpoint format {checkpoint.format}; this reader knows "
            f"{CHECKPOINT_FORMAT}"
        )
    return checkpoint


def write_checkpoint_file(path: Path, checkpoints: Iterable[Checkpoint]) -> None:
    """Write a checkpoint file atomically and durably (temporary file, fsync, rename)."""
    data = _file_bytes(CheckpointSet(checkpoints=list(checkpoints)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _file_bytes(checkpoints: CheckpointSet) -> bytes:
    return canonical_json(checkpoints.model_dump(mode="json")) + b"\n"


def read_checkpoint_file(path: Path, what: str, *, canonical: bool = False) -> CheckpointSet:
    """Read a checkpoint file; missing, unreadable or malformed is an ``IntegrityError``.

    ``canonical``: the bytes must be exactly what :func:`write_checkpoint_file` writes (the
    store's own file); a witness kept elsewhere may have been re-indented.
    """
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_FILE + 1)
    except OSError as exc:
        raise IntegrityError(f"{what} {path} cannot be read: {exc.strerror or exc}") from exc
    if len(data) > _MAX_FILE:
        raise IntegrityError(f"{what} {path} is over {_MAX_FILE} bytes: not a checkpoint file")
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise IntegrityError(f"{what} {path} is not valid JSON ({exc})") from exc
    if not isinstance(document, dict) or not isinstance(document.get("checkpoints"), list):
        raise IntegrityError(
            f"{what} {path} is not a checkpoint file: expected an object with a 'checkpoints' list"
        )
    if document.get("format", CHECKPOINT_FORMAT) != CHECKPOINT_FORMAT:
        raise IntegrityError(
            f"{what} {path} has format {document.get('format')!r}; this reader knows "
            f"{CHECKPOINT_FORMAT}"
        )
    checkpoints = [
        parse_checkpoint(c, f"{what} {path}, entry {i + 1},")
        for i, c in enumerate(document["checkpoints"])
    ]
    found = CheckpointSet(checkpoints=checkpoints)
    if canonical and data != _file_bytes(found):
        raise IntegrityError(
            f"{what} {path} is not in canonical form: its bytes differ from its re-serialised "
            "content; it was edited"
        )
    return found


def check_chain_checkpoints(
    chain: str,
    walk: ChainWalk,
    newest: tuple[int, Checkpoint] | None,
    file: tuple[Path, CheckpointSet | IntegrityError] | None,
    witnesses: list[tuple[Path, CheckpointSet]],
    trust: SignatureTrust | None,
    problems: ProblemList,
    *,
    witness_required: bool = True,
    positioned: bool = False,
    **where: Any,
) -> None:
    """Check one chain against its newest checkpoint record, its CHECKPOINT file and witnesses.

    Parameters
    ----------
    chain:
        The chain's name in checkpoints (``lineage``, ``decisions``...).
    walk:
        What the chain walk saw: stored hashes by position.
    newest:
        The newest checkpoint held in the chain (or beside it): where it is stored, and it.
        Its signature is checked; every checkpoint's position and hash are checked by the
        caller's walk with :func:`check_against_chain`.
    file:
        The CHECKPOINT file's path and content (or why it could not be read); None if absent.
    witnesses:
        Checkpoint files kept elsewhere: the chain must still hold what they witnessed.
    trust:
        Who may sign; None checks everything but the signatures.
    witness_required:
        Whether a witness must hold a checkpoint of this chain (a chain that was still empty
        when the witness was exported has none).
    positioned:
        Whether ``trust`` follows this chain's key rotations and revocations (the lineage
        chain): signatures are then judged at the checkpoint's position.
    """
    if newest is not None and trust is not None:
        stored_at, checkpoint = newest
        try:
            checkpoint.check_signature(
                trust, f"checkpoint in {chain} {stored_at}", positioned=positioned
            )
        except SignatureError as exc:
            problems.add(
                f"newest checkpoint ({chain} {stored_at}): {exc}",
                seq=stored_at,
                kind="signature",
                **where,
            )
    if file is not None:
        path, content = file
        if isinstance(content, IntegrityError):
            problems.add(f"{content}: the checkpoint file was corrupted or tampered with", **where)
        else:
            held = content.of(chain)
            if held is None and newest is not None:
                problems.add(
                    f"{path} holds no checkpoint of the {chain} chain, which has "
                    "checkpoints: it was replaced",
                    **where,
                )
            elif held is not None:
                _check_file(chain, walk, newest, path, held, trust, problems, where, positioned)
    elif newest is not None:
        problems.add(
            f"the {chain} chain holds checkpoints but its CHECKPOINT file is missing: "
            "it was deleted",
            **where,
        )
    for path, witness in witnesses:
        held = witness.of(chain)
        if held is None and witness_required:
            chains = ", ".join(c.chain for c in witness.checkpoints) or "none"
            problems.add(
                f"witness {path} holds no checkpoint of the {chain} chain (it holds: "
                f"{chains}): it is a witness of something else",
                **where,
            )
        if held is None:
            continue
        _check_witness(chain, walk, path, held, trust, problems, where, positioned)


def check_against_chain(
    chain: str, walk: ChainWalk, checkpoint: Checkpoint, what: str
) -> str | None:
    """Why the chain does not hold what ``checkpoint`` says it held, or None if it does."""
    if walk.identity is not None and checkpoint.chain_id != walk.identity:
        return (
            f"{what} names {chain} chain {checkpoint.chain_id[:12]}, but this chain starts at "
            f"{walk.identity[:12]}: it is another store's, or this one was rewritten from its "
            "first record"
        )
    if checkpoint.seq > walk.last_seq:
        return (
            f"{what} names {chain} {checkpoint.seq}, but the chain ends at {walk.last_seq}: "
            "records were cut off the end"
        )
    if walk.hash_at.get(checkpoint.seq) != checkpoint.hash:
        return (
            f"{what} holds a different hash for {chain} {checkpoint.seq} than the chain: "
            "history up to it was rewritten"
        )
    return None


def _check_file(
    chain: str,
    walk: ChainWalk,
    newest: tuple[int, Checkpoint] | None,
    path: Path,
    held: Checkpoint,
    trust: SignatureTrust | None,
    problems: ProblemList,
    where: dict[str, Any],
    positioned: bool,
) -> None:
    why = check_against_chain(chain, walk, held, f"{path.name} ({path})")
    if why is not None:
        problems.add(why, seq=min(held.seq, walk.last_seq + 1), **where)
    if newest is not None and held.seq < newest[1].seq:
        problems.add(
            f"{path.name} names {chain} {held.seq}, older than the newest checkpoint in the chain "
            f"({chain} {newest[1].seq}): it was rolled back",
            **where,
        )
    if trust is not None:
        try:
            held.check_signature(trust, f"{path}", positioned=positioned)
        except SignatureError as exc:
            problems.add(str(exc), kind="signature", **where)


def _check_witness(
    chain: str,
    walk: ChainWalk,
    path: Path,
    held: Checkpoint,
    trust: SignatureTrust | None,
    problems: ProblemList,
    where: dict[str, Any],
    positioned: bool,
) -> None:
    why = check_against_chain(chain, walk, held, f"witness {path}")
    if why is not None:
        problems.add(why, seq=min(held.seq, walk.last_seq + 1), **where)
    if trust is not None:
        try:
            held.check_signature(trust, f"witness {path}", positioned=positioned)
        except SignatureError as exc:
            problems.add(str(exc), kind="signature", **where)
