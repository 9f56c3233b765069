"""Walk the whole chain and every artifact file, naming the first thing that does not hold."""

from __future__ import annotations

import json
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select

from mlwarden.lineage._hashing import GENESIS
from mlwarden.lineage._records import record_hash
from mlwarden.lineage._store import LineageStore, _records

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

    @property
    def ok(self) -> bool:
        """True when no record or artifact failed."""
        return not self.problems

    def summary(self) -> str:
        """One line: ``ok: N records, M artifacts`` or the first problem."""
        if self.ok:
            return f"ok: {self.records} records, {self.artifacts} artifacts"
        extra = len(self.problems) - 1
        more = f" (and {extra} more problem{'s' if extra != 1 else ''})" if extra else ""
        return f"FAILED: {self.problems[0].message}{more}"


def verify_store(store: LineageStore) -> VerifyReport:
    """Check every record's hash and link, the HEAD file, and every artifact's bytes.

    Reads raw rows rather than parsed records so that a row edited into nonsense is reported,
    not raised.
    """
    problems: list[Problem] = []

    def found(message: str, *, seq: int | None = None, artifact: str | None = None) -> None:
        if len(problems) < _MAX_PROBLEMS:
            problems.append(Problem(seq=seq, artifact=artifact, message=message))

    prev_hash, prev_seq, count, artifacts = GENESIS, 0, 0, 0
    hash_at: dict[int, str] = {}
    with store._engine.connect() as conn:
        rows = conn.execute(select(_records).order_by(_records.c.seq)).mappings()
        for row in rows:
            count += 1
            seq = int(row["seq"])
            if seq != prev_seq + 1:
                if seq > prev_seq + 1:
                    gap = (
                        f"record {prev_seq + 1}"
                        if seq == prev_seq + 2
                        else (f"records {prev_seq + 1}-{seq - 1}")
                    )
                    found(f"{gap} missing before record {seq}: deleted", seq=prev_seq + 1)
                else:
                    found(f"record {seq} appears out of order after record {prev_seq}", seq=seq)
            if row["prev_hash"] != prev_hash:
                found(
                    f"record {seq} ({row['kind']}) does not link to the record before it: "
                    "a record was deleted, inserted or reordered",
                    seq=seq,
                )
            try:
                payload = json.loads(row["payload"])
                expected = record_hash(
                    fmt=int(row["format"]),
                    seq=seq,
                    kind=str(row["kind"]),
                    subject=str(row["subject"]),
                    key=row["key"],
                    payload=payload,
                    created_at=datetime.fromisoformat(row["created_at"]),
                    prev_hash=str(row["prev_hash"]),
                )
            except (ValueError, TypeError) as exc:
                found(f"record {seq} is unreadable: {exc}", seq=seq)
                expected = None
                payload = {}
            if expected is not None and expected != row["hash"]:
                found(
                    f"record {seq} ({row['kind']}) was edited or moved: "
                    "its content does not match its hash",
                    seq=seq,
                )
            if row["kind"] == "artifact":
                artifacts += 1
                sha, size = str(row["subject"]), payload.get("size")
                why = store.artifacts.check(sha, int(size)) if isinstance(size, int) else "no size"
                if why:
                    found(f"artifact {sha[:12]} (record {seq}): {why}", seq=seq, artifact=sha)
            hash_at[seq] = str(row["hash"])
            prev_hash, prev_seq = str(row["hash"]), seq

    head = store.read_head()
    if head is not None:
        head_seq, head_hash = head
        if head_seq > prev_seq:
            found(
                f"records {prev_seq + 1}-{head_seq} missing from the end: "
                f"HEAD names record {head_seq}, the store ends at {prev_seq}",
                seq=prev_seq + 1,
            )
        elif hash_at.get(head_seq) != head_hash:
            found(f"record {head_seq} does not match the hash HEAD holds for it", seq=head_seq)
    problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    return VerifyReport(records=count, artifacts=artifacts, problems=problems)
