"""The record format of the lineage store (format version 1) and the hash that chains records."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from mlwarden.lineage._hashing import sha256_json

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
        raise ValueError(f"unknown lineage record format {fmt}; this reader knows {RECORD_FORMAT}")
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
