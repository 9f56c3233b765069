"""Walk the lineage chain, every artifact file and the checkpoints; name what does not hold."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlwarden.errors import IntegrityError, StoreError
from mlwarden.lineage._chain import ChainReport, Problem, ProblemList, database_check
from mlwarden.lineage._checkpoints import (
    Checkpoint,
    CheckpointSet,
    SignatureTrust,
    check_against_chain,
    check_chain_checkpoints,
    parse_checkpoint,
    read_checkpoint_file,
)
from mlwarden.lineage._records import Record, noncanonical_fields
from mlwarden.lineage._store import CHAIN, CHAIN_NAME, LineageStore

__all__ = ["Problem", "VerifyReport", "verify_store"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
NOT_SIGNED = "checkpoint signatures not checked (no trust policy given)"


class VerifyReport(ChainReport):
    """What ``LineageStore`` verification checked and what it found, first problem first."""

    records: int
    artifacts: int
    database_check: str = ""

    def ok_line(self) -> str:
        """``ok: N records, M artifacts``, and a skipped database check if it was skipped."""
        skipped = f"; {self.database_check}" if "skipped" in self.database_check else ""
        return f"ok: {self.records} records, {self.artifacts} artifacts{skipped}"


def verify_store(
    store: LineageStore,
    *,
    trust: SignatureTrust | None = None,
    witnesses: Iterable[Path] = (),
) -> VerifyReport:
    """Check the database file, every record's form, hash and link, HEAD, the checkpoints and
    every artifact.

    Reads raw row bytes rather than parsed records, so that a row edited into nonsense (bad
    UTF-8, bad JSON, an unparsable time) is reported, not raised.

    Parameters
    ----------
    trust:
        Who may sign checkpoints. Without it everything but their signatures is checked, and
        the report says so.
    witnesses:
        Checkpoint files exported earlier and kept outside the store: the chain must still
        hold each witnessed record with the witnessed hash.

    Raises
    ------
    IntegrityError
        If a witness file cannot be read as a checkpoint file.
    """
    witnessed = [(Path(p), read_checkpoint_file(Path(p), "witness")) for p in witnesses]
    problems = ProblemList()
    # Files first: they are written before (CHECKPOINT) or after (HEAD) a commit, so what
    # they name is already in the chain the walk then reads.
    head = _read_head(store, problems)
    checkpoint_file = _read_checkpoint_file(store)
    db_check = database_check(store.engine, store.sqlite, problems)
    seen = _Seen(store)
    with store.engine.connect() as conn:
        walk = CHAIN.walk(conn, store.sqlite, problems, seen.inspect)
    _check_head(head, walk.last_seq, walk.hash_at, problems)
    for seq, checkpoint in seen.checkpoints:
        why = check_against_chain(CHAIN_NAME, walk, checkpoint, f"checkpoint record {seq}")
        if why is not None:
            problems.add(why, seq=seq)
    newest = seen.checkpoints[-1] if seen.checkpoints else None
    check_chain_checkpoints(
        CHAIN_NAME, walk, newest, checkpoint_file, witnessed, trust, problems, positioned=True
    )
    signed = bool(seen.checkpoints or checkpoint_file or witnessed)
    return VerifyReport(
        records=walk.count,
        artifacts=seen.artifacts,
        problems=problems.sorted(),
        database_check=db_check,
        checkpoints=NOT_SIGNED if signed and trust is None else "",
    )


class _Seen:
    """The lineage chain's own checks of each row: canonical form, artifacts, checkpoints."""

    def __init__(self, store: LineageStore) -> None:
        self.store = store
        self.artifacts = 0
        self.checkpoints: list[tuple[int, Checkpoint]] = []

    def inspect(
        self, seq: int, row: Mapping[str, Any], record: Record, hash_ok: bool, found: ProblemList
    ) -> None:
        bad = noncanonical_fields(record, row)
        if bad:
            found.add(
                f"record {seq} ({record.kind}) is not in canonical form: stored "
                f"{' and '.join(bad)} differs from its re-serialised bytes; it was edited",
                seq=seq,
            )
        if record.kind == "artifact":
            self.artifacts += 1
            _check_artifact(self.store, record, found)
        elif record.kind == "checkpoint":
            try:
                checkpoint = parse_checkpoint(record.payload, f"checkpoint record {seq}")
            except IntegrityError as exc:
                found.add(str(exc), seq=seq)
                return
            if checkpoint.seq >= seq or checkpoint.chain != CHAIN_NAME:
                found.add(
                    f"checkpoint record {seq} names {checkpoint.chain} {checkpoint.seq}, "
                    "not a record before it in this chain",
                    seq=seq,
                )
                return
            self.checkpoints.append((seq, checkpoint))


def _check_artifact(store: LineageStore, record: Record, found: ProblemList) -> None:
    """The artifact file still holds the recorded bytes; a forged name never leaves the store."""
    sha, size = record.subject, record.payload.get("size")
    if not _SHA256.fullmatch(sha):
        found.add(f"artifact record {record.seq} names {sha[:70]!r}, not a sha256", seq=record.seq)
        return
    valid = isinstance(size, int) and not isinstance(size, bool)
    why = store.artifacts.check(sha, size) if isinstance(size, int) and valid else "no size"
    if why:
        found.add(f"artifact {sha[:12]} (record {record.seq}): {why}", seq=record.seq, artifact=sha)


def _read_head(store: LineageStore, found: ProblemList) -> tuple[int, str] | None:
    try:
        return store.read_head()
    except StoreError as exc:
        found.add(str(exc))
        return None


def _read_checkpoint_file(
    store: LineageStore,
) -> tuple[Path, CheckpointSet | IntegrityError] | None:
    path = store.checkpoint_path
    if not path.exists():
        return None
    try:
        return path, read_checkpoint_file(path, "checkpoint file", canonical=True)
    except IntegrityError as exc:
        return path, exc


def _check_head(
    head: tuple[int, str] | None, last_seq: int, hash_at: dict[int, str], found: ProblemList
) -> None:
    if head is None:
        return
    head_seq, head_hash = head
    if head_seq > last_seq:
        found.add(
            f"records {last_seq + 1}-{head_seq} missing from the end: "
            f"HEAD names record {head_seq}, the store ends at {last_seq}",
            seq=last_seq + 1,
        )
    elif hash_at.get(head_seq) != head_hash:
        found.add(f"record {head_seq} does not match the hash HEAD holds for it", seq=head_seq)
