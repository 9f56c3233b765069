"""One hash chain in one append-only table: its definition, append, head and verify walker.

The lineage store and both decision-log chains are instances of :class:`ChainTable`. Each
plugs in its own row hash and row checks, so their stored formats stay what they were; what
they share is written once here: the table's chain columns (``seq``, ``format``, ``prev_hash``,
``hash``) and the triggers that make it append-only, the write transaction that takes the lock
before reading the head, the head itself, and the walk that checks position, link, hash and
readable bytes of every row, reporting what it finds instead of raising.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import (
    Column,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Select,
    String,
    Table,
    cast,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from mlwarden._sql import forbid_changes
from mlwarden.errors import IntegrityError
from mlwarden.lineage._hashing import GENESIS

__all__ = [
    "GENESIS",
    "ChainReport",
    "ChainTable",
    "ChainWalk",
    "Problem",
    "ProblemList",
    "database_check",
    "db_cause",
]

MAX_PROBLEMS = 50
_BUSY_MS = 60_000  # the engine's SQLite busy timeout (mlwarden._sql.open_engine)


class Problem(BaseModel):
    """One thing verification found wrong; ``seq`` (and ``table``, ``artifact``...) say where.

    ``kind`` is ``signature`` when a signature or signer did not verify, ``integrity`` for
    everything else: the CLI exits 5 for the first and 4 for the second.
    """

    seq: int | None = None
    artifact: str | None = None
    table: str | None = None
    request_id: str | None = None
    kind: Literal["integrity", "signature"] = "integrity"
    message: str


class ChainReport(BaseModel):
    """What a verification checked and found, first problem first.

    ``checkpoints`` says what was established about signed checkpoints (e.g. that their
    signatures were not checked for want of a trust policy).
    """

    problems: list[Problem]
    checkpoints: str = ""

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.problems

    @property
    def signature_failed(self) -> bool:
        """True when every problem is a signature problem (the CLI then exits 5, not 4)."""
        return bool(self.problems) and all(p.kind == "signature" for p in self.problems)

    def ok_line(self) -> str:
        """What ``summary`` says when nothing failed; each report names what it counted."""
        return "ok"

    def summary(self) -> str:
        """One line: ``ok: ...`` or the first problem."""
        if self.ok:
            note = f"; {self.checkpoints}" if self.checkpoints else ""
            return f"{self.ok_line()}{note}"
        extra = len(self.problems) - 1
        more = f" (and {extra} more problem{'s' if extra != 1 else ''})" if extra else ""
        return f"FAILED: {self.problems[0].message}{more}"


@dataclass
class ProblemList:
    """Problems found so far, capped so a wrecked store does not fill memory."""

    items: list[Problem] = field(default_factory=list)
    dropped: int = 0

    def add(self, message: str, **where: Any) -> None:
        """Record one problem; ``where`` takes Problem's location fields and ``kind``.

        A message already recorded (one file checked for two chains) is not repeated.
        """
        if any(p.message == message for p in self.items):
            return
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(Problem(message=message, **where))
        else:
            self.dropped += 1

    def sorted(self) -> list[Problem]:
        """Problems in chain order; those with no position last."""
        return sorted(self.items, key=lambda p: (p.seq is None, p.seq or 0))


@dataclass
class ChainWalk:
    """What a walk over one chain saw: its rows, their stored hashes and its last position."""

    count: int = 0
    last_seq: int = 0
    hash_at: dict[int, str] = field(default_factory=dict)

    @property
    def identity(self) -> str | None:
        """The chain's identity: the stored hash of its first record (None if it has none)."""
        return self.hash_at.get(1)

    @property
    def last_hash(self) -> str:
        """The stored hash of the newest row walked (``GENESIS`` for an empty chain)."""
        return self.hash_at.get(self.last_seq, GENESIS)


# (row with text columns as str) -> (expected hash, parsed row); raises ValueError or
# IntegrityError if the row cannot be read.
RowHasher = Callable[[Mapping[str, Any]], tuple[str, Any]]
# (seq, text row, parsed row, whether its hash matched, where problems go)
RowInspector = Callable[[int, Mapping[str, Any], Any, bool, ProblemList], None]


class ChainTable:
    """One append-only, hash-chained table: ``seq, format, <own columns>, prev_hash, hash``.

    Parameters
    ----------
    metadata, name:
        Where the table is defined and its name.
    columns, indexes:
        The table's own columns (between ``format`` and ``prev_hash``) and its indexes.
    hasher:
        Expected hash of a stored row, and the parsed row; the chain's own format.
    label:
        How messages name a row, e.g. ``record 4 (run_started)``.
    noun:
        What one row is called in messages: ``record``, ``decision``...
    append_only, pg_function:
        The message the database's triggers raise and the PostgreSQL function that raises it.
    locate:
        Extra location fields of a row's problems (e.g. its ``request_id``).
    """

    def __init__(
        self,
        metadata: MetaData,
        name: str,
        columns: list[Column[Any]],
        *,
        hasher: RowHasher,
        label: Callable[[int, Mapping[str, Any]], str],
        noun: str,
        append_only: str,
        pg_function: str,
        indexes: tuple[Index, ...] = (),
        locate: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.table = Table(
            name,
            metadata,
            Column("seq", Integer, primary_key=True, autoincrement=False),
            Column("format", Integer, nullable=False),
            *columns,
            Column("prev_hash", String(64), nullable=False),
            Column("hash", String(64), nullable=False, unique=True),
            *indexes,
        )
        forbid_changes(self.table, append_only, pg_function)
        self.name = name
        self.noun = noun
        self.hasher = hasher
        self.label = label
        self.locate = locate
        # Text columns are read as raw bytes on SQLite, so bad UTF-8 is reported, not raised.
        self._text_columns = tuple(c.name for c in self.table.c if isinstance(c.type, String))

    # -- writing -------------------------------------------------------------------------------

    @contextmanager
    def appending(
        self, engine: Engine, sqlite: bool, *, busy_s: float | None = None
    ) -> Iterator[tuple[Connection, int, str]]:
        """A write transaction holding the chain's lock, with its newest seq and hash.

        SQLite: ``BEGIN IMMEDIATE`` takes the write lock before the head is read, so two
        writers never chain off the same head (the engine must leave transactions to the
        caller: ``open_engine(..., begin="manual")``). PostgreSQL: ``LOCK TABLE`` does the same
        for this table. Commits when the block ends; a raise inside leaves nothing.
        ``busy_s``: how long to wait for a locked SQLite database (default: the engine's).
        """
        with engine.connect() as conn:
            if sqlite and busy_s is not None:
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {max(1, int(busy_s * 1000))}")
            try:
                if sqlite:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    conn.exec_driver_sql(f"LOCK TABLE {self.name} IN SHARE ROW EXCLUSIVE MODE")
                seq, digest = self.head(conn)
                yield conn, seq, digest
                conn.commit()
            finally:
                conn.rollback()  # no-op after a commit; ends a failed transaction at once
                if sqlite and busy_s is not None:
                    conn.exec_driver_sql(f"PRAGMA busy_timeout = {_BUSY_MS}")

    # -- reading -------------------------------------------------------------------------------

    def head(self, conn: Connection) -> tuple[int, str]:
        """``(seq, hash)`` of the newest row, ``(0, GENESIS)`` for an empty chain."""
        t = self.table
        last = conn.execute(select(t.c.seq, t.c.hash).order_by(t.c.seq.desc()).limit(1)).first()
        return (int(last[0]), str(last[1])) if last else (0, GENESIS)

    def identity(self, conn: Connection) -> str | None:
        """The hash of the first row: what names this chain in its checkpoints."""
        t = self.table
        return conn.execute(select(t.c.hash).where(t.c.seq == 1)).scalar()

    def raw_rows(self, sqlite: bool) -> Select[Any]:
        """All rows by seq; on SQLite text columns come back as bytes, decoded by the walker.

        SQLite stores whatever bytes were written and its driver raises on invalid UTF-8 in
        the middle of a scan; PostgreSQL refuses invalid UTF-8 on write, so it is read as is.
        """
        t = self.table
        if not sqlite:
            return select(t).order_by(t.c.seq)
        columns = [
            cast(c, LargeBinary).label(c.name) if c.name in self._text_columns else c for c in t.c
        ]
        return select(*columns).order_by(t.c.seq)

    # -- verifying -----------------------------------------------------------------------------

    def walk(
        self,
        conn: Connection,
        sqlite: bool,
        problems: ProblemList,
        inspect: RowInspector | None = None,
        **where: Any,
    ) -> ChainWalk:
        """Check every row's position, link, readable bytes and hash; report, never raise.

        ``inspect`` adds the chain's own checks of each row (canonical form, indexed columns,
        artifact files); ``where`` is added to every problem (e.g. ``table=``).
        """
        walk = ChainWalk()
        prev_hash, noun = GENESIS, self.noun
        try:
            for row in conn.execute(self.raw_rows(sqlite)).mappings():
                walk.count += 1
                seq = row["seq"]
                if not isinstance(seq, int) or isinstance(seq, bool):
                    shown = _text(seq)[:20]
                    problems.add(
                        f"a row after {noun} {walk.last_seq} has seq {shown!r}, not a number",
                        **where,
                    )
                    continue
                text, undecodable = _decoded(row, self._text_columns)
                here = {**where, **(self.locate(text) if self.locate else {})}
                self._check_position(seq, walk.last_seq, problems, here)
                stored_hash = text["hash"] or ""
                if text["prev_hash"] != prev_hash:
                    problems.add(
                        f"{self.label(seq, text)} does not link to the {noun} before it: "
                        f"a {noun} was deleted, inserted or reordered",
                        seq=seq,
                        **here,
                    )
                if undecodable:
                    problems.add(f"{noun} {seq} is unreadable: {undecodable}", seq=seq, **here)
                else:
                    self._check_row(seq, text, problems, inspect, here)
                walk.hash_at[seq] = stored_hash
                prev_hash, walk.last_seq = stored_hash, seq
        except SQLAlchemyError as exc:
            problems.add(
                f"the {self.name} table could not be read past {noun} {walk.last_seq}: "
                f"{db_cause(exc)}",
                **where,
            )
        return walk

    def _check_position(
        self, seq: int, prev_seq: int, problems: ProblemList, where: dict[str, Any]
    ) -> None:
        noun = self.noun
        if seq == prev_seq + 1:
            return
        if seq > prev_seq + 1:
            gap = (
                f"{noun} {prev_seq + 1}"
                if seq == prev_seq + 2
                else f"{noun}s {prev_seq + 1}-{seq - 1}"
            )
            problems.add(f"{gap} missing before {noun} {seq}: deleted", seq=prev_seq + 1, **where)
        else:
            problems.add(
                f"{noun} {seq} appears out of order after {noun} {prev_seq}", seq=seq, **where
            )

    def _check_row(
        self,
        seq: int,
        text: Mapping[str, Any],
        problems: ProblemList,
        inspect: RowInspector | None,
        where: dict[str, Any],
    ) -> None:
        try:
            expected, parsed = self.hasher(text)
        except (IntegrityError, ValueError, TypeError) as exc:
            message = str(exc)
            for prefix in (f"lineage record {seq}: ", f"{self.noun} {seq}: "):
                message = message.removeprefix(prefix)
            problems.add(f"{self.noun} {seq} is unreadable: {message}", seq=seq, **where)
            return
        hash_ok = expected == text["hash"]
        if not hash_ok:
            problems.add(
                f"{self.label(seq, text)} was edited or moved: its content does not match its hash",
                seq=seq,
                **where,
            )
        if inspect is not None:
            inspect(seq, text, parsed, hash_ok, problems)


def _decoded(row: Mapping[Any, Any], columns: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    """The row with its text columns as ``str``; and what could not be decoded, if anything."""
    text: dict[str, Any] = dict(row)
    bad = ""
    for name in columns:
        value = row[name]
        if isinstance(value, bytes):
            try:
                text[name] = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                text[name] = value.decode("utf-8", errors="replace")
                bad = bad or (
                    f"{name} is not valid UTF-8 (byte {exc.start}); "
                    "the store was corrupted or tampered with"
                )
    return text, bad


def _text(value: object) -> str:
    """A raw column value as text, for messages (bad bytes shown, not raised)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def database_check(engine: Engine, sqlite: bool, problems: ProblemList) -> str:
    """Run SQLite's ``PRAGMA integrity_check``: it sees damage the chain cannot (an index).

    A corrupted index makes lookups return wrong rows while every row still hashes correctly.
    PostgreSQL has no equivalent pragma, so the check is skipped there (and says so).
    """
    if not sqlite:
        return f"database integrity check skipped ({engine.dialect.name} has no PRAGMA)"
    try:
        with engine.connect() as conn:
            lines = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA integrity_check")]
    except SQLAlchemyError as exc:
        lines = [db_cause(exc)]
    if lines == ["ok"]:
        return "database integrity check ok"
    more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
    problems.add(f"the SQLite file fails PRAGMA integrity_check: {lines[0]}{more}")
    return "database integrity check FAILED"


def db_cause(exc: SQLAlchemyError) -> str:
    """The driver's own first line, without SQLAlchemy's SQL echo and help link."""
    return str(exc.orig if isinstance(exc, DBAPIError) else exc).splitlines()[0][:300]
