"""The append-only, hash-chained lineage store (SQLAlchemy; SQLite by default).

Records are only ever inserted: the code has no UPDATE or DELETE, and the database itself
rejects both (triggers), so a write through any client fails. Each record carries the hash of
its predecessor, and the embedded store keeps the newest hash in ``HEAD``, so ``verify`` also
finds records removed from the end. A signed checkpoint (a ``checkpoint`` record and the
``CHECKPOINT`` file) makes that claim with a key kept outside the store. Artifact bytes live
beside the database, named by sha256. The chain itself (table, locking, walk) is
:class:`mlwarden.lineage._chain.ChainTable`.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Engine, Index, MetaData, String, Text, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from mlwarden._sql import create_tables, open_engine
from mlwarden.errors import IntegrityError, RecordNotFoundError, StoreError
from mlwarden.lineage._artifacts import ArtifactFiles
from mlwarden.lineage._chain import ChainTable, db_cause
from mlwarden.lineage._checkpoints import (
    Checkpoint,
    CheckpointSigner,
    make_checkpoint,
    parse_checkpoint,
    write_checkpoint_file,
)
from mlwarden.lineage._hashing import canonical_json
from mlwarden.lineage._records import Record, RecordKind, record_from_row, record_to_row

Clock = Callable[[], datetime]
CHAIN_NAME = "lineage"


def _hash_row(row: Mapping[str, Any]) -> tuple[str, Record]:
    record = record_from_row(row)
    return record.expected_hash(), record


_metadata = MetaData()
CHAIN = ChainTable(
    _metadata,
    "records",
    [
        Column("kind", String(32), nullable=False),
        Column("subject", String(128), nullable=False),
        Column("key", String(128), nullable=True),
        Column("payload", Text, nullable=False),
        Column("created_at", String(40), nullable=False),
    ],
    indexes=(
        Index("ix_records_kind_subject", "kind", "subject"),
        Index("ix_records_kind_key", "kind", "key"),
    ),
    hasher=_hash_row,
    label=lambda seq, row: f"record {seq} ({row['kind']})",
    noun="record",
    append_only="lineage records are append-only",
    pg_function="mlwarden_forbid_change",
)
_records = CHAIN.table


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Appender:
    """Appends records inside one store transaction: all of them land, or none does.

    ``store`` is the store it appends to, so a record built inside the transaction can read
    committed records and artifacts and add artifacts of its own (``put_artifact(tx=...)``).
    """

    def __init__(
        self,
        conn: Connection,
        last_seq: int,
        last_hash: str,
        clock: Clock,
        store: LineageStore | None = None,
    ) -> None:
        self._conn = conn
        self._seq = last_seq
        self._hash = last_hash
        self._clock = clock
        self.store = store
        self.appended: list[Record] = []

    def append(
        self,
        kind: RecordKind,
        subject: str,
        payload: dict[str, Any],
        *,
        key: str | None = None,
    ) -> Record:
        """Append one record after the current head and return it."""
        created_at = self._clock()
        seq = self._seq + 1
        # Round-trip the payload so what is hashed is exactly what a reader gets back.
        stored_payload = json.loads(canonical_json(payload))
        draft = Record(
            seq=seq,
            kind=kind,
            subject=subject,
            key=key,
            payload=stored_payload,
            created_at=created_at,
            prev_hash=self._hash,
            hash="",
        )
        record = draft.model_copy(update={"hash": draft.expected_hash()})
        self._conn.execute(_records.insert().values(_to_row(record)))
        self._seq, self._hash = seq, record.hash
        self.appended.append(record)
        return record

    @property
    def head(self) -> str:
        """Hash of the newest record, counting this transaction's."""
        return self._hash

    def has(self, kind: RecordKind, subject: str) -> bool:
        """Whether a record of ``kind`` about ``subject`` exists, counting this transaction's."""
        row = self._conn.execute(
            select(_records.c.seq)
            .where(_records.c.kind == kind, _records.c.subject == subject)
            .limit(1)
        ).first()
        return row is not None

    def latest(self, kind: RecordKind, subject: str, *, key: str | None = None) -> Record | None:
        """The newest record of ``kind`` about ``subject`` (and ``key``), counting this one's."""
        query = select(_records).where(_records.c.kind == kind, _records.c.subject == subject)
        if key is not None:
            query = query.where(_records.c.key == key)
        row = self._conn.execute(query.order_by(_records.c.seq.desc()).limit(1)).mappings().first()
        return _to_record(row) if row is not None else None

    def count(self, kind: RecordKind, subject: str) -> int:
        """How many records of ``kind`` about ``subject`` exist, counting this transaction's."""
        rows = self._conn.execute(
            select(_records.c.seq).where(_records.c.kind == kind, _records.c.subject == subject)
        ).all()
        return len(rows)


class LineageStore:
    """Records and artifacts of every pipeline input, execution and output.

    Parameters
    ----------
    root:
        Folder of the embedded store: ``lineage.db``, ``artifacts/``, ``HEAD``,
        ``CHECKPOINT`` and ``keys/``.
        Created on first use.
    url:
        A SQLAlchemy database URL to keep records elsewhere (e.g. PostgreSQL); artifacts stay
        under ``root``. Defaults to ``sqlite:///<root>/lineage.db``.
    clock:
        Source of record timestamps; tests pass a fixed one.
    """

    def __init__(self, root: Path | str, url: str | None = None, clock: Clock = _utcnow) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the lineage store at {self.root}: {exc}") from exc
        self.artifacts = ArtifactFiles(self.root / "artifacts")
        self._clock = clock
        self._sqlite = url is None or url.startswith("sqlite")
        self.url = url or f"sqlite:///{self.root / 'lineage.db'}"
        self._engine = self._create_engine()
        try:
            create_tables(_metadata, self._engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the lineage database {self.url}: {_cause(exc)}") from exc

    @property
    def sqlite(self) -> bool:
        """Whether the records live in SQLite (which has ``PRAGMA integrity_check``)."""
        return self._sqlite

    @property
    def engine(self) -> Engine:
        """The records' database engine (verification reads raw rows through it)."""
        return self._engine

    @property
    def head_path(self) -> Path:
        """File holding the newest record's seq and hash, to catch records cut off the end."""
        return self.root / "HEAD"

    @property
    def checkpoint_path(self) -> Path:
        """File holding the newest signed checkpoint: HEAD's claim, signed."""
        return self.root / "CHECKPOINT"

    def _create_engine(self) -> Engine:
        # The chain's write transaction begins itself (BEGIN IMMEDIATE), so the driver must not.
        return open_engine(self.url, self._sqlite, begin="manual")

    def close(self) -> None:
        """Release database connections."""
        self._engine.dispose()

    # -- writing -----------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Appender]:
        """Append several records atomically; a crash inside leaves none of them."""
        try:
            with CHAIN.appending(self._engine, self._sqlite) as (conn, seq, digest):
                appender = Appender(conn, seq, digest, self._clock, store=self)
                yield appender
        except SQLAlchemyError as exc:
            raise StoreError(f"lineage write failed, nothing was recorded: {_cause(exc)}") from exc
        if appender.appended:
            newest = appender.appended[-1]
            self._write_head(newest.seq, newest.hash)

    def append(
        self, kind: RecordKind, subject: str, payload: dict[str, Any], *, key: str | None = None
    ) -> Record:
        """Append a single record in its own transaction."""
        with self.transaction() as tx:
            return tx.append(kind, subject, payload, key=key)

    def checkpoint(self, signer: CheckpointSigner) -> Checkpoint:
        """Sign the chain's current head, append that as a record and write ``CHECKPOINT``.

        The file is written inside the transaction, before the record commits: a crash in
        between leaves a file naming a record the chain holds, never one older than the chain's
        newest checkpoint (which ``verify`` would take for a rollback).

        Raises
        ------
        StoreError
            If the store holds no records yet (there is nothing to sign).
        """
        try:
            with CHAIN.appending(self._engine, self._sqlite) as (conn, seq, digest):
                chain_id = CHAIN.identity(conn)
                if seq == 0 or chain_id is None:
                    raise StoreError("the lineage store holds no records yet: nothing to sign")
                signed = make_checkpoint(
                    signer,
                    chain=CHAIN_NAME,
                    chain_id=chain_id,
                    seq=seq,
                    digest=digest,
                    created_at=self._clock(),
                )
                write_checkpoint_file(self.checkpoint_path, [signed])
                appender = Appender(conn, seq, digest, self._clock)
                record = appender.append("checkpoint", chain_id, signed.to_json(), key=str(seq))
        except SQLAlchemyError as exc:
            raise StoreError(
                f"lineage checkpoint failed, nothing was recorded: {_cause(exc)}"
            ) from exc
        self._write_head(record.seq, record.hash)
        return signed

    def newest_checkpoint(self) -> Checkpoint | None:
        """The newest signed checkpoint the chain holds, or None before the first one.

        Raises
        ------
        IntegrityError
            If its record does not hold a valid checkpoint (run ``verify``).
        """
        query = select(_records).where(_records.c.kind == "checkpoint")
        with _reading(), self._engine.connect() as conn:
            row = conn.execute(query.order_by(_records.c.seq.desc()).limit(1)).mappings().first()
        if row is None:
            return None
        record = _to_record(row)
        return parse_checkpoint(record.payload, f"checkpoint record {record.seq}")

    def put_artifact(
        self, data: bytes | Path, *, name: str, media_type: str, tx: Appender | None = None
    ) -> str:
        """Store ``data`` (bytes or a file) and record it once per distinct content; its sha256."""
        digest = self.artifacts.write(data)
        size = data.stat().st_size if isinstance(data, Path) else len(data)
        payload = {"sha256": digest, "size": size, "name": name, "media_type": media_type}
        if tx is None:
            with self.transaction() as own:
                if not own.has("artifact", digest):
                    own.append("artifact", digest, payload)
        elif not tx.has("artifact", digest):
            tx.append("artifact", digest, payload)
        return digest

    def _write_head(self, seq: int, digest: str) -> None:
        data = canonical_json({"seq": seq, "hash": digest})
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".HEAD-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.head_path)

    # -- reading -----------------------------------------------------------------------------

    def read_head(self) -> tuple[int, str] | None:
        """The ``(seq, hash)`` recorded in HEAD, or None for a store that has no records yet."""
        if not self.head_path.exists():
            return None
        try:
            head = json.loads(self.head_path.read_text())
            return int(head["seq"]), str(head["hash"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"{self.head_path} is unreadable: {exc}") from exc

    def records(
        self,
        kind: RecordKind | None = None,
        *,
        subject: str | None = None,
        key: str | None = None,
        newest_first: bool = False,
    ) -> list[Record]:
        """Records matching every given filter, in chain order (or newest first)."""
        query = select(_records)
        if kind is not None:
            query = query.where(_records.c.kind == kind)
        if subject is not None:
            query = query.where(_records.c.subject == subject)
        if key is not None:
            query = query.where(_records.c.key == key)
        order = _records.c.seq.desc() if newest_first else _records.c.seq
        with _reading(), self._engine.connect() as conn:
            rows = conn.execute(query.order_by(order)).mappings().all()
        return [_to_record(row) for row in rows]

    def iter_all(self) -> Iterator[Record]:
        """Every record in the order the database returns by seq; used by verification."""
        with _reading(), self._engine.connect() as conn:
            for row in conn.execute(select(_records).order_by(_records.c.seq)).mappings():
                yield _to_record(row)

    def record_by_hash(self, digest: str) -> Record | None:
        """The record whose hash is ``digest``, if the chain holds one."""
        with _reading(), self._engine.connect() as conn:
            row = conn.execute(select(_records).where(_records.c.hash == digest)).mappings().first()
        return _to_record(row) if row is not None else None

    def read_artifact(self, sha256: str) -> bytes:
        """The bytes of a recorded artifact, checked against their hash."""
        return self.artifacts.read(sha256)

    def artifact_path(self, sha256: str) -> Path:
        """The file of a recorded artifact, checked against its hash, for reading in parts."""
        return self.artifacts.verified_path(sha256)

    def artifact_record(self, sha256: str) -> Record | None:
        """The record that introduced this artifact, if any."""
        found = self.records("artifact", subject=sha256)
        return found[0] if found else None

    def resolve_artifact(self, prefix: str) -> str:
        """Expand an artifact hash prefix (at least 6 characters) to the full sha256."""
        if len(prefix) < 6:
            raise RecordNotFoundError(f"artifact reference {prefix!r} is too short (6+ hex chars)")
        query = select(_records.c.subject).where(
            _records.c.kind == "artifact", _records.c.subject.startswith(prefix)
        )
        with _reading(), self._engine.connect() as conn:
            matches = sorted({row[0] for row in conn.execute(query)})
        if len(matches) != 1:
            what = "no artifact" if not matches else f"{len(matches)} artifacts"
            raise RecordNotFoundError(f"{what} in the store match {prefix!r}")
        return str(matches[0])


def _to_row(record: Record) -> dict[str, Any]:
    return record_to_row(record)


def _to_record(row: Any) -> Record:
    return record_from_row(row)


@contextmanager
def _reading() -> Iterator[None]:
    """Turn a database error while reading into one clear ``StoreError``."""
    try:
        yield
    except SQLAlchemyError as exc:
        cause = _cause(exc)
        if "decode to UTF-8" in cause:
            raise IntegrityError(
                "the lineage database holds text that is not valid UTF-8: it was corrupted or "
                "tampered with (`mlwarden lineage verify` names the record)"
            ) from exc
        raise StoreError(f"cannot read the lineage database: {cause}") from exc


def _cause(exc: SQLAlchemyError) -> str:
    return db_cause(exc)


def hostname() -> str:
    """This machine's name, recorded on every execution."""
    return socket.gethostname()
