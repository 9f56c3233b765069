"""Walk the whole chain and every artifact file, naming the first thing that does not hold."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel
from sqlalchemy import LargeBinary, Select, cast, select
from sqlalchemy.exc import SQLAlchemyError

from mlwarden.errors import IntegrityError, StoreError
from mlwarden.lineage._hashing import GENESIS
from mlwarden.lineage._records import Record, noncanonical_fields, record_from_row
from mlwarden.lineage._store import LineageStore, _cause, _records

_MAX_PROBLEMS = 50


class Problem(BaseModel):
    """One thing verification found wrong; ``seq`` or ``artifact`` says where."""

    seq: int | None = None
    artifact: str | None = None
    message: str


class VerifyReport(BaseModel):
    """What ``LineageStore`` verification checked and what it found, first problem first."""

    records: int
    artifacts: int
    problems: list[Problem]
    database_check: str = ""

    @property
    def ok(self) -> bool:
        """True when no record or artifact failed."""
        return not self.problems

    def summary(self) -> str:
        """One line: ``ok: N records, M artifacts`` or the first problem."""
        if self.ok:
            skipped = f"; {self.database_check}" if "skipped" in self.database_check else ""
            return f"ok: {self.records} records, {self.artifacts} artifacts{skipped}"
        extra = len(self.problems) - 1
        more = f" (and {extra} more problem{'s' if extra != 1 else ''})" if extra else ""
        return f"FAILED: {self.problems[0].message}{more}"


def verify_store(store: LineageStore) -> VerifyReport:
    """Check the database file, every record's form, hash and link, HEAD, and every artifact.

    Reads raw row bytes rather than parsed records, so that a row edited into nonsense (bad
    UTF-8, bad JSON, an unparsable time) is reported, not raised.
    """
    problems: list[Problem] = []

    def found(message: str, *, seq: int | None = None, artifact: str | None = None) -> None:
        if len(problems) < _MAX_PROBLEMS:
            problems.append(Problem(seq=seq, artifact=artifact, message=message))

    database_check = _database_check(store, found)
    prev_hash, prev_seq, count, artifacts = GENESIS, 0, 0, 0
    hash_at: dict[int, str] = {}
    try:
        with store._engine.connect() as conn:
            for row in conn.execute(_raw_rows(store)).mappings():
                count += 1
                seq = row["seq"]
                if not isinstance(seq, int) or isinstance(seq, bool):
                    shown = _text(seq)[:20]
                    found(f"a row after record {prev_seq} has seq {shown!r}, not a number")
                    continue
                _check_position(seq, prev_seq, found)
                stored_hash = _text(row["hash"])
                if _text(row["prev_hash"]) != prev_hash:
                    found(
                        f"record {seq} ({_text(row['kind'])}) does not link to the record before "
                        "it: a record was deleted, inserted or reordered",
                        seq=seq,
                    )
                record = _check_record(row, found)
                if record is not None and record.kind == "artifact":
                    artifacts += 1
                    _check_artifact(store, record, found)
                hash_at[seq] = stored_hash
                prev_hash, prev_seq = stored_hash, seq
    except SQLAlchemyError as exc:
        reason = _cause(exc)
        found(f"the database could not be read past record {prev_seq}: {reason}")

    _check_head(store, prev_seq, hash_at, found)
    problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    return VerifyReport(
        records=count, artifacts=artifacts, problems=problems, database_check=database_check
    )


_Found = Callable[..., None]
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TEXT_COLUMNS = ("kind", "subject", "key", "payload", "created_at", "prev_hash", "hash")


def _raw_rows(store: LineageStore) -> Select[Any]:
    """All rows by seq; on SQLite the text columns come back as bytes, decoded here, not there.

    SQLite stores whatever bytes were written; its driver raises on invalid UTF-8 mid-scan.
    PostgreSQL refuses invalid UTF-8 on write, so its text is read as is.
    """
    if not store._sqlite:
        return select(_records).order_by(_records.c.seq)
    columns = [
        cast(c, LargeBinary).label(c.name) if c.name in _TEXT_COLUMNS else c for c in _records.c
    ]
    return select(*columns).order_by(_records.c.seq)


def _text(value: object) -> str:
    """A raw column value as text, for messages and links (bad bytes shown, not raised)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _check_position(seq: int, prev_seq: int, found: _Found) -> None:
    if seq == prev_seq + 1:
        return
    if seq > prev_seq + 1:
        gap = (
            f"record {prev_seq + 1}" if seq == prev_seq + 2 else f"records {prev_seq + 1}-{seq - 1}"
        )
        found(f"{gap} missing before record {seq}: deleted", seq=prev_seq + 1)
    else:
        found(f"record {seq} appears out of order after record {prev_seq}", seq=seq)


def _check_record(row: Mapping[Any, Any], found: _Found) -> Record | None:
    """Parse one raw row, check its canonical form and its hash; None if it cannot be parsed."""
    seq = int(row["seq"])
    try:
        record = record_from_row(row)
        expected = record.expected_hash()
    except (IntegrityError, ValueError) as exc:
        message = str(exc).removeprefix(f"lineage record {seq}: ")
        found(f"record {seq} is unreadable: {message}", seq=seq)
        return None
    texts = {name: _text(row[name]) if row[name] is not None else None for name in _TEXT_COLUMNS}
    bad = noncanonical_fields(record, {**row, **texts})
    if bad:
        found(
            f"record {seq} ({record.kind}) is not in canonical form: stored {' and '.join(bad)} "
            "differs from its re-serialised bytes; it was edited",
            seq=seq,
        )
    if expected != record.hash:
        found(
            f"record {seq} ({record.kind}) was edited or moved: "
            "its content does not match its hash",
            seq=seq,
        )
    return record


def _check_artifact(store: LineageStore, record: Record, found: _Found) -> None:
    """The artifact file still holds the recorded bytes; a forged name never leaves the store."""
    sha, size = record.subject, record.payload.get("size")
    if not _SHA256.fullmatch(sha):
        found(f"artifact record {record.seq} names {sha[:70]!r}, not a sha256", seq=record.seq)
        return
    valid = isinstance(size, int) and not isinstance(size, bool)
    why = store.artifacts.check(sha, size) if isinstance(size, int) and valid else "no size"
    if why:
        found(f"artifact {sha[:12]} (record {record.seq}): {why}", seq=record.seq, artifact=sha)


def _check_head(store: LineageStore, last_seq: int, hash_at: dict[int, str], found: _Found) -> None:
    try:
        head = store.read_head()
    except StoreError as exc:
        found(str(exc))
        return
    if head is None:
        return
    head_seq, head_hash = head
    if head_seq > last_seq:
        found(
            f"records {last_seq + 1}-{head_seq} missing from the end: "
            f"HEAD names record {head_seq}, the store ends at {last_seq}",
            seq=last_seq + 1,
        )
    elif hash_at.get(head_seq) != head_hash:
        found(f"record {head_seq} does not match the hash HEAD holds for it", seq=head_seq)


def _database_check(store: LineageStore, found: _Found) -> str:
    """Run SQLite's ``PRAGMA integrity_check``: it sees damage the chain cannot (e.g. an index).

    A corrupted index makes lookups by kind or subject return wrong rows while every record
    still hashes correctly. PostgreSQL has no equivalent pragma, so the check is skipped there.
    """
    if not store._sqlite:
        return f"database integrity check skipped ({store._engine.dialect.name} has no PRAGMA)"
    try:
        with store._engine.connect() as conn:
            lines = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA integrity_check")]
    except SQLAlchemyError as exc:
        lines = [_cause(exc)]
    if lines == ["ok"]:
        return "database integrity check ok"
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    found(f"the SQLite file fails PRAGMA integrity_check: {lines[0]}{more}")
    return "database integrity check FAILED"
