"""The decision log's three chains on the one chain module: their tables, hash and checks.

::

    decisions             seq, format, request_id (unique), created_at, client, model_ref,
                          body (canonical JSON of the record), prev_hash, hash
    decision_feedback     seq, format, request_id, created_at, analyst,
                          body (canonical JSON of the feedback), prev_hash, hash
    decision_checkpoints  seq, format, chain, at_seq, created_at,
                          body (canonical JSON of a signed checkpoint), prev_hash, hash

A row's hash covers its format, chain, position, canonical body bytes and its predecessor's
hash (:func:`chain_hash`); the columns beside the body are for lookups and are checked
against it. Checkpoints sign the head of ``decisions`` and ``decision_feedback``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Column, Index, Integer, MetaData, String, Text, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from mlwarden.errors import FormatError, IntegrityError
from mlwarden.lineage import (
    ChainReport,
    ChainTable,
    ChainWalk,
    Checkpoint,
    CheckpointSet,
    CheckpointSigner,
    ProblemList,
    SignatureTrust,
    canonical_json,
    check_against_chain,
    check_chain_checkpoints,
    database_check,
    db_cause,
    make_checkpoint,
    parse_checkpoint,
    read_checkpoint_file,
    sha256_bytes,
    write_checkpoint_file,
)
from mlwarden.serve._decision_records import DECISION_FORMAT, input_digest

ChainName = Literal["decisions", "decision_feedback"]
CHECKPOINTS = "decision_checkpoints"
NOT_SIGNED = "checkpoint signatures not checked (no trust policy given)"


def chain_hash(chain: str, fmt: int, seq: int, body: bytes, prev_hash: str) -> str:
    """The sha256 over one row's stored body bytes, its position, chain and predecessor.

    The body is hashed exactly as stored (canonical JSON), so any changed byte shows, and the
    writer serialises each record once. The envelope is canonical JSON, which holds no raw
    newline, so ``envelope + newline + body`` splits one way only.
    """
    if fmt != DECISION_FORMAT:
        raise FormatError(f"unknown decision log format {fmt}; this reader knows {DECISION_FORMAT}")
    envelope = canonical_json({"format": fmt, "chain": chain, "seq": seq, "prev": prev_hash})
    return sha256_bytes(envelope + b"\n" + body)


def _hasher(chain: str) -> Any:
    def row_hash(row: Mapping[str, Any]) -> tuple[str, None]:
        fmt = row["format"]
        if not isinstance(fmt, int) or isinstance(fmt, bool):
            raise FormatError(f"format {fmt!r} is not an integer")
        body = str(row["body"]).encode("utf-8")
        return chain_hash(chain, fmt, int(row["seq"]), body, str(row["prev_hash"])), None

    return row_hash


def _request_label(noun: str) -> Any:
    return lambda seq, row: f"{noun} {seq} (request {row['request_id']})"


_APPEND_ONLY = "the decision log is append-only"
_PG_FUNCTION = "mlwarden_decisions_forbid_change"
metadata = MetaData()
DECISIONS = ChainTable(
    metadata,
    "decisions",
    [
        Column("request_id", String(32), nullable=False, unique=True),
        Column("created_at", String(40), nullable=False),
        Column("client", String(128), nullable=False),
        Column("model_ref", String(256), nullable=False),
        Column("body", Text, nullable=False),
    ],
    indexes=(Index("ix_decisions_client", "client"),),
    hasher=_hasher("decisions"),
    label=_request_label("decision"),
    locate=lambda row: {"request_id": row["request_id"]},
    noun="decision",
    append_only=_APPEND_ONLY,
    pg_function=_PG_FUNCTION,
)
FEEDBACK = ChainTable(
    metadata,
    "decision_feedback",
    [
        Column("request_id", String(32), nullable=False, index=True),
        Column("created_at", String(40), nullable=False),
        Column("analyst", String(128), nullable=False),
        Column("body", Text, nullable=False),
    ],
    hasher=_hasher("decision_feedback"),
    label=_request_label("feedback"),
    locate=lambda row: {"request_id": row["request_id"]},
    noun="feedback",
    append_only=_APPEND_ONLY,
    pg_function=_PG_FUNCTION,
)
CHECKPOINT_CHAIN = ChainTable(
    metadata,
    CHECKPOINTS,
    [
        Column("chain", String(32), nullable=False),
        Column("at_seq", Integer, nullable=False),
        Column("created_at", String(40), nullable=False),
        Column("body", Text, nullable=False),
    ],
    hasher=_hasher(CHECKPOINTS),
    label=lambda seq, row: f"checkpoint {seq} (of {row['chain']})",
    noun="checkpoint",
    append_only=_APPEND_ONLY,
    pg_function=_PG_FUNCTION,
)
CHAINS: dict[ChainName, ChainTable] = {"decisions": DECISIONS, "decision_feedback": FEEDBACK}
# Columns kept beside the body for lookups; verify checks each against the hashed body.
_INDEXED: dict[str, dict[str, str]] = {
    "decisions": {c: c for c in ("request_id", "created_at", "client", "model_ref")},
    "decision_feedback": {c: c for c in ("request_id", "created_at", "analyst")},
    CHECKPOINTS: {"chain": "chain", "at_seq": "seq", "created_at": "created_at"},
}


class DecisionVerifyReport(ChainReport):
    """What ``DecisionLog.verify`` checked and found, first problem first.

    ``checkpointed``: signed checkpoints the log holds (0: the server had no signer, so rows
    cut off the end are found only against a saved head or a witness).
    """

    decisions: int
    feedback: int
    checkpointed: int = 0
    database_check: str = ""

    def ok_line(self) -> str:
        """``ok: N decisions, M feedback``."""
        return f"ok: {self.decisions} decisions, {self.feedback} feedback"


def append_checkpoints(
    engine: Engine,
    sqlite: bool,
    signer: CheckpointSigner,
    file: Path | None,
    created_at: Any,
) -> list[Checkpoint]:
    """Sign the heads of both chains, store them as checkpoint rows and in ``file``.

    Nothing is written when neither chain moved since the newest checkpoint. The file is
    written before the rows commit, so a crash between leaves it naming rows the chains hold.
    """
    t = CHECKPOINT_CHAIN.table
    with CHECKPOINT_CHAIN.appending(engine, sqlite) as (conn, seq, prev):
        latest = _latest_checkpoints(conn)
        signed: list[Checkpoint] = []
        for name, chain in CHAINS.items():
            at_seq, digest = chain.head(conn)
            identity = chain.identity(conn)
            if at_seq == 0 or identity is None:
                continue
            signed.append(
                make_checkpoint(
                    signer,
                    chain=name,
                    chain_id=identity,
                    seq=at_seq,
                    digest=digest,
                    created_at=created_at,
                )
            )
        if not signed or all(latest.get(c.chain) == (c.seq, c.hash, c.signer) for c in signed):
            return []
        if file is not None:
            write_checkpoint_file(file, signed)
        rows = []
        for checkpoint in signed:
            seq += 1
            body = canonical_json(checkpoint.to_json())
            digest = chain_hash(CHECKPOINTS, DECISION_FORMAT, seq, body, prev)
            rows.append(
                {
                    "seq": seq,
                    "format": DECISION_FORMAT,
                    "chain": checkpoint.chain,
                    "at_seq": checkpoint.seq,
                    "created_at": checkpoint.to_json()["created_at"],
                    "body": body.decode("utf-8"),
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
        conn.execute(t.insert(), rows)
    return signed


def _latest_checkpoints(conn: Connection) -> dict[str, tuple[int, str, str]]:
    """The newest checkpoint row of each chain: (seq, hash, signer), for skipping repeats."""
    t = CHECKPOINT_CHAIN.table
    latest: dict[str, tuple[int, str, str]] = {}
    for (text,) in conn.execute(select(t.c.body).order_by(t.c.seq.desc()).limit(2 * len(CHAINS))):
        try:
            c = parse_checkpoint(_json(text), "checkpoint row")
        except (IntegrityError, ValueError):
            continue
        latest.setdefault(c.chain, (c.seq, c.hash, c.signer))
    return latest


def newest_checkpoints(conn: Connection) -> list[Checkpoint]:
    """The newest stored checkpoint of each chain, in chain order: what a witness keeps."""
    t = CHECKPOINT_CHAIN.table
    newest: dict[str, Checkpoint] = {}
    for seq, text in conn.execute(select(t.c.seq, t.c.body).order_by(t.c.seq.desc())):
        if len(newest) == len(CHAINS):
            break
        try:
            body = _json(text)
        except ValueError as exc:
            raise IntegrityError(f"checkpoint {seq} is unreadable: {exc}") from exc
        checkpoint = parse_checkpoint(body, f"checkpoint {seq}")
        newest.setdefault(checkpoint.chain, checkpoint)
    return [newest[name] for name in CHAINS if name in newest]


def _json(text: str) -> object:
    return json.loads(text)


class _Checks:
    """The decision log's own checks of each row: indexed columns, input hashes, checkpoints."""

    def __init__(self) -> None:
        self.checkpoints: dict[str, list[tuple[int, Checkpoint]]] = {}
        self.count = 0

    def inspector(self, chain: str) -> Any:
        noun = {"decisions": "decision", "decision_feedback": "feedback"}.get(chain, "checkpoint")

        def inspect(
            seq: int, row: Mapping[str, Any], _: None, hash_ok: bool, found: ProblemList
        ) -> None:
            label = (
                f"{noun} {seq} (request {row['request_id']})"
                if "request_id" in row
                else f"{noun} {seq} (of {row['chain']})"
            )
            where = {"seq": seq, "table": chain, "request_id": row.get("request_id")}
            if not hash_ok:
                return
            try:
                body = _json(str(row["body"]))
            except ValueError as exc:
                found.add(f"{label} is unreadable: {exc}", **where)
                return
            if not isinstance(body, dict) or any(
                body.get(key) != row[column] for column, key in _INDEXED[chain].items()
            ):
                found.add(
                    f"{label} was edited: its indexed columns differ from its hashed content",
                    **where,
                )
            elif chain == "decisions" and body.get("input_sha256") != input_digest(body):
                found.add(f"{label}: input_sha256 does not match input", **where)
            elif chain == CHECKPOINTS:
                self._checkpoint(seq, body, label, found, where)

        return inspect

    def _checkpoint(
        self,
        seq: int,
        body: dict[str, Any],
        label: str,
        found: ProblemList,
        where: dict[str, Any],
    ) -> None:
        try:
            checkpoint = parse_checkpoint(body, label)
        except IntegrityError as exc:
            found.add(str(exc), **where)
            return
        if checkpoint.chain not in CHAINS:
            found.add(f"{label} names an unknown chain {checkpoint.chain!r}", **where)
            return
        self.checkpoints.setdefault(checkpoint.chain, []).append((seq, checkpoint))
        self.count += 1


def verify_log(
    engine: Engine,
    sqlite: bool,
    *,
    checkpoint_file: Path | None,
    expected_head: tuple[int, str] | None,
    trust: SignatureTrust | None,
    witnesses: list[tuple[Path, CheckpointSet]],
) -> DecisionVerifyReport:
    """Walk the three chains, check checkpoints, the checkpoint file and witnesses."""
    problems = ProblemList()
    file = _read_file(checkpoint_file)
    db_check = database_check(engine, sqlite, problems)
    checks = _Checks()
    walks: dict[str, ChainWalk] = {}
    with engine.connect() as conn:
        for name, chain in (*CHAINS.items(), (CHECKPOINTS, CHECKPOINT_CHAIN)):
            walks[name] = chain.walk(conn, sqlite, problems, checks.inspector(name), table=name)
        _check_orphans(conn, problems)
    if expected_head is not None:
        seq, digest = expected_head
        if seq > 0 and walks["decisions"].hash_at.get(seq) != digest:
            problems.add(
                f"decision {seq} does not match the saved head: "
                "rows were removed from the end or rewritten",
                seq=seq,
                table="decisions",
            )
    for name in CHAINS:
        stored = checks.checkpoints.get(name, [])
        for seq, checkpoint in stored:
            why = check_against_chain(name, walks[name], checkpoint, f"checkpoint {seq}")
            if why is not None:
                problems.add(why, seq=seq, table=CHECKPOINTS)
        check_chain_checkpoints(
            name,
            walks[name],
            stored[-1] if stored else None,
            file,
            witnesses,
            trust,
            problems,
            witness_required=name == "decisions",
            table=name,
        )
    signed = bool(checks.count or file or witnesses)
    return DecisionVerifyReport(
        decisions=walks["decisions"].count,
        feedback=walks["decision_feedback"].count,
        checkpointed=checks.count,
        problems=problems.items,  # chain by chain, each in order
        database_check=db_check,
        checkpoints=NOT_SIGNED if signed and trust is None else "",
    )


def _read_file(path: Path | None) -> tuple[Path, CheckpointSet | IntegrityError] | None:
    if path is None or not path.exists():
        return None
    try:
        return path, read_checkpoint_file(path, "checkpoint file", canonical=True)
    except IntegrityError as exc:
        return path, exc


def _check_orphans(conn: Connection, problems: ProblemList) -> None:
    """Feedback for a request the log does not hold: its decision was deleted."""
    d, f = DECISIONS.table, FEEDBACK.table
    try:
        orphans = conn.execute(
            select(f.c.seq, f.c.request_id)
            .where(f.c.request_id.not_in(select(d.c.request_id)))
            .order_by(f.c.seq)
        ).all()
    except SQLAlchemyError as exc:
        problems.add(f"feedback could not be matched to decisions: {db_cause(exc)}")
        return
    for seq, request_id in orphans:
        problems.add(
            f"feedback {seq} is for request {request_id}, which the log does not hold",
            seq=seq,
            table="decision_feedback",
            request_id=request_id,
        )
