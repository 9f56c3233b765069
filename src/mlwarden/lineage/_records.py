"""The record format of the lineage store (format version 1) and the hash that chains records."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from mlwarden.errors import FormatError, IntegrityError
from mlwarden.lineage._hashing import canonical_json, sha256_json

RECORD_FORMAT = 1

RecordKind = Literal[
    "artifact",
    "execution_started",
    "execution_ended",
    "event",
    "run_started",
    "run_ended",
    "cache_hit",
    "model_version",
    "model_stage",
    "key_rotated",
    "key_revoked",
    "checkpoint",
]


class Record(BaseModel):
    """One immutable entry of the store, chained to its predecessor by ``prev_hash``.

    ``subject`` is what the record is about (an artifact's sha256, an execution or run id, a
    model name); ``key`` is a second index (a cache key, the artifact an event touches).
    """

    model_config = ConfigDict(frozen=True)

    seq: int
    kind: RecordKind
    subject: str
    key: str | None = None
    payload: dict[str, Any]
    created_at: datetime
    prev_hash: str
    hash: str
    format: int = RECORD_FORMAT

    def expected_hash(self) -> str:
        """Recompute this record's hash from its content; differs from ``hash`` if edited."""
        return record_hash(
            fmt=self.format,
            seq=self.seq,
            kind=self.kind,
            subject=self.subject,
            key=self.key,
            payload=self.payload,
            created_at=self.created_at,
            prev_hash=self.prev_hash,
        )


def record_hash(
    *,
    fmt: int,
    seq: int,
    kind: str,
    subject: str,
    key: str | None,
    payload: dict[str, Any],
    created_at: datetime,
    prev_hash: str,
) -> str:
    """The sha256 over a record's canonical content, including its position and predecessor."""
    if fmt != RECORD_FORMAT:
        raise FormatError(f"unknown lineage record format {fmt}; this reader knows {RECORD_FORMAT}")
    return sha256_json(
        {
            "format": fmt,
            "seq": seq,
            "kind": kind,
            "subject": subject,
            "key": key,
            "payload": payload,
            "created_at": created_at.isoformat(),
            "prev": prev_hash,
        }
    )


def record_to_row(record: Record) -> dict[str, Any]:
    """The stored form of a record: the one canonical text of each field."""
    return {
        "seq": record.seq,
        "format": record.format,
        "kind": record.kind,
        "subject": record.subject,
        "key": record.key,
        "payload": canonical_json(record.payload).decode("utf-8"),
        "created_at": record.created_at.isoformat(),
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


def record_from_row(row: Mapping[str, Any]) -> Record:
    """Parse a stored row; a row no writer could have made is an ``IntegrityError``, not a crash.

    Checks shape only (UTF-8, JSON object, ISO time, known kind), not the hash: verification
    does that for the whole chain.
    """
    seq = row["seq"]
    where = f"lineage record {seq}"
    text: dict[str, str | None] = {}
    for column in ("kind", "subject", "key", "payload", "created_at", "prev_hash", "hash"):
        value = row[column]
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise IntegrityError(
                    f"{where}: {column} is not valid UTF-8 (byte {exc.start}); "
                    "the store was corrupted or tampered with"
                ) from exc
        if value is not None and not isinstance(value, str):
            raise IntegrityError(f"{where}: {column} holds {type(value).__name__}, expected text")
        text[column] = value
    kind = text["kind"]
    if kind not in get_args(RecordKind):
        raise IntegrityError(f"{where}: unknown kind {kind!r}; the store was tampered with")
    try:
        payload = json.loads(text["payload"] or "")
    except ValueError as exc:
        raise IntegrityError(f"{where}: payload is not valid JSON ({exc})") from exc
    if not isinstance(payload, dict):
        raise IntegrityError(
            f"{where}: payload is JSON {type(payload).__name__}, expected an object"
        )
    try:
        created_at = datetime.fromisoformat(text["created_at"] or "")
    except ValueError as exc:
        raise IntegrityError(
            f"{where}: created_at {text['created_at']!r} is not an ISO 8601 time"
        ) from exc
    fmt = row["format"]
    if not isinstance(fmt, int) or isinstance(fmt, bool):
        raise IntegrityError(f"{where}: format {fmt!r} is not an integer")
    try:
        return Record(
            seq=seq,
            format=fmt,
            kind=cast(RecordKind, kind),
            subject=text["subject"] or "",
            key=text["key"],
            payload=payload,
            created_at=created_at,
            prev_hash=text["prev_hash"] or "",
            hash=text["hash"] or "",
        )
    except ValidationError as exc:
        raise IntegrityError(f"{where}: {exc.errors()[0]['msg']}") from exc


def noncanonical_fields(record: Record, row: Mapping[str, Any]) -> list[str]:
    """Fields whose stored text differs from the one canonical form of their parsed value.

    The hash covers parsed values, so without this check ``2026-01-01 10:00`` and
    ``2026-01-01T10:00`` (or reordered JSON keys) would verify as the same record.
    """
    canonical = record_to_row(record)
    return [name for name, value in canonical.items() if row[name] != value]
