"""The decision log: one append-only, hash-chained record per served request, plus feedback.

Every answer the server gives is recorded with what was asked (input rows and their sha256),
by whom (the key id), of which model (``name@version``, its sha256, and the lineage store's head
when the model was loaded, which links the decision to the model's lineage), what every guard
said, which guards failed open, what shadow models answered, and how long it took. Analysts
later attach labels (feedback), which become training rows.

Writing stays off the request path: ``append`` puts the record on a bounded in-memory queue and
returns; one background thread commits queued records in batches. When the queue is full,
``append`` waits up to ``put_timeout_s`` for room, then refuses the record, returns False and
counts it in ``dropped``; a record the writer cannot store (a duplicate request id, a value
JSON cannot hold) is logged and counted in ``failed``, and the next ``flush`` or ``close``
raises :class:`DecisionWriteError`. Nothing is lost without a count. A database that refuses
writes for a while (locked, unreachable: an ``OperationalError``) does not lose the batch: the
writer retries it with backoff while later records wait in the bounded queue.

:meth:`DecisionLog.status` says whether the log keeps up: it is *stalled* when its oldest
unwritten record has waited more than ``max_delay_s`` or the queue is full. The server asks it
before answering and refuses (or flags) requests while it is stalled, and ``/readyz`` reports
it, so a log that cannot write is never silently bypassed.

Storage: two tables, by default in the same SQLite file as the API keys (``serve.db``, WAL)::

    decisions          seq, format, request_id (unique), created_at, client, model_ref,
                       body (canonical JSON of the record), prev_hash, hash
    decision_feedback  seq, format, request_id, created_at, analyst,
                       body (canonical JSON of the feedback), prev_hash, hash

Each table is its own chain, as in the lineage store: a row's hash covers its format, table,
position, canonical body and its predecessor's hash, and the database refuses UPDATE and DELETE
(triggers). ``verify`` walks both chains and names the first row that does not hold; pass it a
``head()`` saved elsewhere to also catch rows cut off the end.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from mlwarden._sql import forbid_changes, open_engine, sqlalchemy_url
from mlwarden.errors import DataError, IntegrityError, RecordNotFoundError, StoreError
from mlwarden.lineage import canonical_json, sha256_bytes, sha256_json

__all__ = [
    "DECISION_FORMAT",
    "DecisionLog",
    "DecisionLogClosedError",
    "DecisionNotFoundError",
    "DecisionRecord",
    "DecisionVerifyReport",
    "DecisionWriteError",
    "Feedback",
    "FeedbackError",
    "FeedbackRow",
    "LogProblem",
    "LogStatus",
    "ShadowResult",
]

DECISION_FORMAT = 1
GENESIS = "0" * 64
_SHA256 = r"^[0-9a-f]{64}$"
_MAX_PROBLEMS = 50
_BUSY_MS = 60_000  # the engine's SQLite busy timeout (mlwarden._sql.open_engine)
_STORED = {"stored": True}
_log = logging.getLogger(__name__)

ChainName = Literal["decisions", "decision_feedback"]


class DecisionNotFoundError(RecordNotFoundError):
    """No logged decision has the given request id."""


class FeedbackError(DataError):
    """Feedback labels do not fit the decision they are for (one label per input row)."""


class DecisionWriteError(StoreError):
    """The background writer could not store some decisions; the log names each one."""


class DecisionLogClosedError(StoreError):
    """The decision log was closed; nothing more can be appended."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _request_id() -> str:
    return uuid.uuid4().hex


class ShadowResult(BaseModel):
    """What one shadow model answered to the same input (recorded, never served)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_ref: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    output: JsonValue


class Feedback(BaseModel):
    """An analyst's labels for a logged decision, one per input row."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str
    labels: list[JsonValue]
    analyst: str = Field(min_length=1, max_length=128)
    created_at: AwareDatetime


class DecisionRecord(BaseModel):
    """One served request, as logged; ``feedback`` is filled in by reads and never stored here.

    ``input_sha256`` is computed from ``input`` when not given, and checked when given.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str = Field(default_factory=_request_id, pattern=r"^[0-9a-f]{32}$")
    created_at: AwareDatetime = Field(default_factory=_utcnow)
    client: str = Field(min_length=1, max_length=128)
    model_ref: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    model_sha256: str = Field(pattern=_SHA256)
    shadow: list[ShadowResult] = Field(default_factory=list)
    input: list[dict[str, JsonValue]]
    input_sha256: str = Field(default="", pattern=_SHA256)
    output: JsonValue
    guards: dict[str, JsonValue] = Field(default_factory=dict)
    fail_open: dict[str, bool] = Field(default_factory=dict)
    latency_ms: float = Field(ge=0, allow_inf_nan=False)
    lineage_head: str = Field(pattern=_SHA256)
    feedback: list[Feedback] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _input_hash(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict) or "input" not in data:
            return data
        if info.context and info.context.get("stored"):
            return data  # read back from the log: verify() checks it, reads stay cheap
        try:
            digest = sha256_json(data["input"])
        except (TypeError, ValueError):
            return data  # not JSON: the field validation says so
        given = data.get("input_sha256")
        if not given:
            return {**data, "input_sha256": digest}
        if given != digest:
            raise ValueError(f"input_sha256 {given} is not the sha256 of the input ({digest})")
        return data


class LogStatus(BaseModel):
    """Whether the log keeps up: what readiness and the request path ask before answering."""

    accepting: bool
    backlog: int
    oldest_s: float
    reason: str | None = None


class _Transient(Exception):
    """The database refused a batch for now (locked, unreachable); the writer retries it."""


class FeedbackRow(BaseModel):
    """One input row joined with its label: a training example from production feedback."""

    request_id: str
    row_index: int
    features: dict[str, JsonValue]
    label: JsonValue
    model_ref: str
    analyst: str
    labelled_at: datetime


class LogProblem(BaseModel):
    """One row that verification found wrong."""

    table: ChainName
    seq: int | None = None
    request_id: str | None = None
    message: str


class DecisionVerifyReport(BaseModel):
    """What ``DecisionLog.verify`` checked and found, first problem first."""

    decisions: int
    feedback: int
    problems: list[LogProblem]

    @property
    def ok(self) -> bool:
        """True when every row of both chains holds."""
        return not self.problems

    def summary(self) -> str:
        """One line: ``ok: N decisions, M feedback`` or the first problem."""
        if self.ok:
            return f"ok: {self.decisions} decisions, {self.feedback} feedback"
        extra = len(self.problems) - 1
        more = f" (and {extra} more problem{'s' if extra != 1 else ''})" if extra else ""
        return f"FAILED: {self.problems[0].message}{more}"


_metadata = MetaData()
_decisions = Table(
    "decisions",
    _metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("format", Integer, nullable=False),
    Column("request_id", String(32), nullable=False, unique=True),
    Column("created_at", String(40), nullable=False),
    Column("client", String(128), nullable=False),
    Column("model_ref", String(256), nullable=False),
    Column("body", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Index("ix_decisions_client", "client"),
)
_feedback = Table(
    "decision_feedback",
    _metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("format", Integer, nullable=False),
    Column("request_id", String(32), nullable=False, index=True),
    Column("created_at", String(40), nullable=False),
    Column("analyst", String(128), nullable=False),
    Column("body", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
)
_TABLES: dict[ChainName, Table] = {"decisions": _decisions, "decision_feedback": _feedback}
# Columns kept beside the body for lookups; verify checks each against the hashed body.
_INDEXED: dict[ChainName, tuple[str, ...]] = {
    "decisions": ("request_id", "created_at", "client", "model_ref"),
    "decision_feedback": ("request_id", "created_at", "analyst"),
}

for _table in _TABLES.values():
    forbid_changes(_table, "the decision log is append-only", "mlwarden_decisions_forbid_change")


def chain_hash(chain: ChainName, fmt: int, seq: int, body: bytes, prev_hash: str) -> str:
    """The sha256 over one row's stored body bytes, its position, chain and predecessor.

    The body is hashed exactly as stored (canonical JSON), so any changed byte shows, and the
    writer serialises each record once. The envelope is canonical JSON, which holds no raw
    newline, so ``envelope + newline + body`` splits one way only.
    """
    if fmt != DECISION_FORMAT:
        raise ValueError(f"unknown decision log format {fmt}; this reader knows {DECISION_FORMAT}")
    envelope = canonical_json({"format": fmt, "chain": chain, "seq": seq, "prev": prev_hash})
    return sha256_bytes(envelope + b"\n" + body)


def _stored_body(model: BaseModel, exclude: set[str] | None = None) -> tuple[dict[str, Any], bytes]:
    """The JSON form of ``model`` and its canonical bytes, which are what is stored and hashed."""
    data = model.model_dump(mode="json", exclude=exclude)
    return data, canonical_json(data)


class DecisionLog:
    """Append-only, hash-chained log of served decisions and their feedback.

    Parameters
    ----------
    url_or_path:
        A SQLAlchemy URL, or a path to a SQLite file (WAL mode, created on first use),
        conventionally ``<store root>/serve.db`` beside the API keys.
    max_queue:
        Records waiting for the writer at most; beyond it ``append`` waits, then drops.
    max_batch:
        Records committed per transaction at most.
    put_timeout_s:
        How long ``append`` waits for room in a full queue before dropping the record.
    max_delay_s:
        How long the oldest record may wait for the writer before :meth:`status` reports the
        log stalled.
    clock:
        Source of feedback timestamps.
    monotonic:
        Seconds for record ages; tests inject a fake one.
    """

    def __init__(
        self,
        url_or_path: str | Path,
        *,
        max_queue: int = 10_000,
        max_batch: int = 500,
        put_timeout_s: float = 0.05,
        max_delay_s: float = 2.0,
        clock: Callable[[], datetime] = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_queue < 1 or not 1 <= max_batch <= 900 or put_timeout_s < 0 or not max_delay_s > 0:
            raise StoreError(
                "decision log needs max_queue >= 1, 1 <= max_batch <= 900, put_timeout_s >= 0 "
                "and max_delay_s > 0"
            )
        self.max_delay_s = max_delay_s
        self._monotonic = monotonic
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._put_timeout_s = put_timeout_s
        self._clock = clock
        try:
            self.url, self._sqlite = sqlalchemy_url(url_or_path)
            self._engine = open_engine(self.url, self._sqlite, begin="manual")
            _metadata.create_all(self._engine)
        except (OSError, SQLAlchemyError) as exc:
            raise StoreError(f"cannot open the decision log {url_or_path}: {exc}") from exc

        self._lock = threading.Lock()
        self._has_items = threading.Condition(self._lock)
        self._has_room = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        self._queue: deque[DecisionRecord] = deque()
        self._since: deque[float] = deque()  # when each queued record was appended
        self._inflight_since: float | None = None
        self._retrying: str | None = None  # why the batch in flight is being retried
        self._closing = False
        self._enqueued = 0
        self._processed = 0
        self._dropped = 0
        self._failed = 0
        self._failed_reported = 0
        self._batches = 0
        self._writer = threading.Thread(
            target=self._run_writer, name="mlwarden-decision-writer", daemon=True
        )
        self._writer.start()

    # -- counters ------------------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Records refused by ``append`` because the queue stayed full."""
        return self._dropped

    @property
    def failed(self) -> int:
        """Records the writer could not store (each one is logged with its request id)."""
        return self._failed

    @property
    def pending(self) -> int:
        """Records queued and not yet committed."""
        return self._enqueued - self._processed

    @property
    def batches(self) -> int:
        """Transactions the writer has committed."""
        return self._batches

    def status(self) -> LogStatus:
        """Whether records are being written in time; ``reason`` says why not."""
        with self._lock:
            backlog = self._enqueued - self._processed
            since = self._inflight_since if self._inflight_since is not None else None
            if since is None and self._since:
                since = self._since[0]
            full = len(self._queue) >= self._max_queue
            retrying, closing = self._retrying, self._closing
        oldest = max(0.0, self._monotonic() - since) if since is not None else 0.0
        reason = None
        if closing:
            reason = "the decision log is closed"
        elif not self._writer.is_alive():
            reason = "the decision writer stopped"
        elif full:
            reason = f"the decision log backlog is full ({backlog} records)"
        elif oldest > self.max_delay_s:
            why = f" ({retrying})" if retrying else ""
            reason = (
                f"the decision log is not writing: its oldest record has waited {oldest:.1f} s, "
                f"more than {self.max_delay_s:g} s{why}"
            )
        return LogStatus(
            accepting=reason is None, backlog=backlog, oldest_s=round(oldest, 3), reason=reason
        )

    def healthy(self) -> bool:
        """Open, its writer running and keeping up: what a readiness probe asks."""
        return self.status().accepting

    # -- writing -------------------------------------------------------------------------------

    def append(self, record: DecisionRecord) -> bool:
        """Queue ``record`` for the background writer; False (and counted) if it was dropped.

        Raises
        ------
        DecisionLogClosedError
            After ``close``.
        """
        with self._lock:
            if self._closing:
                raise DecisionLogClosedError("the decision log is closed")
            if len(self._queue) >= self._max_queue:
                self._has_room.wait_for(
                    lambda: len(self._queue) < self._max_queue or self._closing,
                    self._put_timeout_s,
                )
                if self._closing:
                    raise DecisionLogClosedError("the decision log is closed")
                if len(self._queue) >= self._max_queue:
                    self._dropped += 1
                    _log.warning("decision log queue full: dropped %s", record.request_id)
                    return False
            self._queue.append(record)
            self._since.append(self._monotonic())
            self._enqueued += 1
            self._has_items.notify()
        return True

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every record appended before this call is committed (or failed).

        Raises
        ------
        StoreError
            If the writer does not catch up within ``timeout_s``.
        DecisionWriteError
            If records failed to be stored since the previous ``flush``.
        """
        self._wait(timeout_s)
        self._raise_failures()

    def settle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for every record appended so far; True if all were handled."""
        with self._lock:
            target = self._enqueued
            return self._progress.wait_for(lambda: self._processed >= target, timeout_s)

    def _wait(self, timeout_s: float) -> None:
        if not self.settle(timeout_s):
            raise StoreError(f"the decision writer did not catch up within {timeout_s} s")

    def close(self, timeout_s: float = 30.0) -> None:
        """Commit everything queued, stop the writer and release connections. Idempotent."""
        with self._lock:
            already = self._closing
            self._closing = True
            self._has_items.notify_all()
            self._has_room.notify_all()
        if already:
            return
        self._writer.join(timeout_s)
        self._engine.dispose()
        if self._writer.is_alive():
            raise StoreError(f"the decision writer did not finish within {timeout_s} s")
        self._raise_failures()

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _raise_failures(self) -> None:
        with self._lock:
            new = self._failed - self._failed_reported
            self._failed_reported = self._failed
        if new:
            raise DecisionWriteError(
                f"{new} decision{'s' if new != 1 else ''} could not be stored; "
                "the log names each request id"
            )

    def _run_writer(self) -> None:
        while True:
            with self._lock:
                self._has_items.wait_for(lambda: bool(self._queue) or self._closing)
                if not self._queue:
                    return  # closing and drained
                take = min(len(self._queue), self._max_batch)
                batch = [self._queue.popleft() for _ in range(take)]
                self._inflight_since = self._since[0]
                for _ in range(take):
                    self._since.popleft()
                self._has_room.notify_all()
            failed = self._write_with_retries(batch)
            with self._lock:
                self._processed += len(batch)
                self._failed += failed
                self._batches += 1
                self._inflight_since = None
                self._retrying = None
                self._progress.notify_all()

    def _write_with_retries(self, batch: list[DecisionRecord]) -> int:
        """Write ``batch``, retrying while the database refuses for now; unless closing."""
        delay = 0.05
        while True:
            try:
                return self._write_batch(batch)
            except _Transient as exc:
                with self._lock:
                    self._retrying = str(exc)
                    if self._closing:
                        ids = ", ".join(r.request_id for r in batch)
                        _log.error("decision log closed while failing; not stored: %s", ids)
                        return len(batch)
                    self._has_items.wait_for(lambda: self._closing, delay)
                delay = min(2.0 * delay, 2.0)

    def _write_batch(self, batch: list[DecisionRecord]) -> int:
        """Commit ``batch`` as one transaction; return how many records could not be stored."""
        bodies: list[tuple[DecisionRecord, dict[str, Any], bytes]] = []
        failed = 0
        for record in batch:
            try:
                bodies.append((record, *_stored_body(record, exclude={"feedback"})))
            except (TypeError, ValueError) as exc:
                failed += 1
                _log.error("decision %s not stored: not JSON: %s", record.request_id, exc)
        if not bodies:
            return failed
        ids = [record.request_id for record, _, _ in bodies]
        try:
            with self._writing("decisions") as (conn, seq, prev):
                seen = set(
                    conn.execute(
                        select(_decisions.c.request_id).where(_decisions.c.request_id.in_(ids))
                    ).scalars()
                )
                rows = []
                for record, data, body in bodies:
                    if record.request_id in seen:
                        failed += 1
                        _log.error("decision %s not stored: duplicate id", record.request_id)
                        continue
                    seen.add(record.request_id)
                    seq += 1
                    digest = chain_hash("decisions", DECISION_FORMAT, seq, body, prev)
                    rows.append(
                        {
                            "seq": seq,
                            "format": DECISION_FORMAT,
                            "request_id": record.request_id,
                            "created_at": data["created_at"],
                            "client": record.client,
                            "model_ref": record.model_ref,
                            "body": body.decode("utf-8"),
                            "prev_hash": prev,
                            "hash": digest,
                        }
                    )
                    prev = digest
                if rows:
                    conn.execute(_decisions.insert(), rows)
        except OperationalError as exc:
            _log.warning("decision log write refused, will retry %d records: %s", len(ids), exc)
            raise _Transient(f"database refused the write: {str(exc.orig)[:200]}") from exc
        except Exception:  # the writer must survive anything; every record is counted
            _log.exception("decision log write failed; not stored: %s", ", ".join(ids))
            return len(batch)
        return failed

    @contextmanager
    def _writing(
        self, chain: ChainName, busy_s: float | None = None
    ) -> Iterator[tuple[Connection, int, str]]:
        """A write transaction holding the chain's lock, with the chain's last seq and hash.

        ``busy_s``: how long to wait for a locked SQLite database (default: the engine's).
        """
        table = _TABLES[chain]
        with self._engine.connect() as conn:
            if self._sqlite and busy_s is not None:
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {max(1, int(busy_s * 1000))}")
            try:
                if self._sqlite:
                    # IMMEDIATE takes the write lock up front: two writers never share a head.
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    conn.exec_driver_sql(f"LOCK TABLE {table.name} IN SHARE ROW EXCLUSIVE MODE")
                last = conn.execute(
                    select(table.c.seq, table.c.hash).order_by(table.c.seq.desc()).limit(1)
                ).first()
                yield (conn, last[0], last[1]) if last else (conn, 0, GENESIS)
                conn.commit()
            finally:
                if self._sqlite and busy_s is not None:
                    conn.rollback()
                    conn.exec_driver_sql(f"PRAGMA busy_timeout = {_BUSY_MS}")

    def feedback(
        self, request_id: str, labels: JsonValue, analyst: str, *, timeout_s: float = 30.0
    ) -> Feedback:
        """Record an analyst's labels for a logged decision; return the stored feedback.

        ``labels`` holds one label per input row; a single label is accepted for a one-row
        request. A later feedback for the same request supersedes earlier ones in
        ``feedback_rows`` (all stay on record). Waits up to ``timeout_s`` for the writer if the
        decision is still queued, and as long for a locked database.

        Raises
        ------
        DecisionNotFoundError
            If no decision has this request id.
        FeedbackError
            If the number of labels is not the number of input rows.
        """
        body = self._decision_body(request_id)
        if body is None:
            self._wait(timeout_s)
            body = self._decision_body(request_id)
        if body is None:
            raise DecisionNotFoundError(f"no logged decision has request id {request_id!r}")
        label_list: list[JsonValue] = list(labels) if isinstance(labels, list) else [labels]
        rows = len(body.get("input", []))
        if len(label_list) != rows:
            raise FeedbackError(
                f"request {request_id} has {rows} input row{'s' if rows != 1 else ''}, "
                f"got {len(label_list)} label{'s' if len(label_list) != 1 else ''}"
            )
        try:
            fb = Feedback(
                request_id=request_id, labels=label_list, analyst=analyst, created_at=self._clock()
            )
            fb_data, fb_bytes = _stored_body(fb)
        except (ValidationError, TypeError, ValueError) as exc:
            raise FeedbackError(f"feedback for request {request_id} is unusable: {exc}") from exc
        try:
            with self._writing("decision_feedback", busy_s=timeout_s) as (conn, seq, prev):
                conn.execute(
                    _feedback.insert().values(
                        seq=seq + 1,
                        format=DECISION_FORMAT,
                        request_id=request_id,
                        created_at=fb_data["created_at"],
                        analyst=fb.analyst,
                        body=fb_bytes.decode("utf-8"),
                        prev_hash=prev,
                        hash=chain_hash(
                            "decision_feedback", DECISION_FORMAT, seq + 1, fb_bytes, prev
                        ),
                    )
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"feedback for request {request_id} was not recorded: {exc}") from exc
        return fb

    # -- reading -------------------------------------------------------------------------------

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the newest committed decision; save it elsewhere for ``verify``."""
        with self._engine.connect() as conn:
            last = conn.execute(
                select(_decisions.c.seq, _decisions.c.hash).order_by(_decisions.c.seq.desc())
            ).first()
        return (int(last[0]), str(last[1])) if last else (0, GENESIS)

    def _decision_body(self, request_id: str) -> dict[str, Any] | None:
        with self._engine.connect() as conn:
            text = conn.execute(
                select(_decisions.c.body).where(_decisions.c.request_id == request_id)
            ).scalar()
        return _load_body(text, request_id) if text is not None else None

    def get(self, request_id: str) -> DecisionRecord | None:
        """The committed decision with this request id and its feedback, or None.

        Raises
        ------
        IntegrityError
            If the stored row no longer parses (run ``verify``).
        """
        found = self._read(select(_decisions).where(_decisions.c.request_id == request_id))
        return found[0] if found else None

    def iter_recent(self, n: int) -> Iterator[DecisionRecord]:
        """The ``n`` newest committed decisions with their feedback, newest first."""
        if n <= 0:
            return iter(())
        return iter(self._read(select(_decisions).order_by(_decisions.c.seq.desc()).limit(n)))

    def _read(self, query: Any) -> list[DecisionRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            ids = [row["request_id"] for row in rows]
            by_request: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
            if ids:
                feedback = conn.execute(
                    select(_feedback.c.request_id, _feedback.c.body)
                    .where(_feedback.c.request_id.in_(ids))
                    .order_by(_feedback.c.seq)
                )
                for request_id, text in feedback:
                    by_request[request_id].append(_load_body(text, request_id))
        records = []
        for row in rows:
            body = _load_body(row["body"], row["request_id"])
            try:
                records.append(
                    DecisionRecord.model_validate(
                        {**body, "feedback": by_request[row["request_id"]]}, context=_STORED
                    )
                )
            except ValidationError as exc:
                raise IntegrityError(
                    f"decision {row['seq']} ({row['request_id']}) is unreadable: run verify"
                ) from exc
        return records

    def feedback_rows(self) -> list[FeedbackRow]:
        """Every labelled input row, in decision order: the latest feedback per request wins."""
        latest: dict[str, dict[str, Any]] = {}
        with self._engine.connect() as conn:
            for request_id, text in conn.execute(
                select(_feedback.c.request_id, _feedback.c.body).order_by(_feedback.c.seq)
            ):
                latest[request_id] = _load_body(text, request_id)
            ids = list(latest)
            decisions: list[tuple[int, dict[str, Any]]] = []
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query = select(_decisions.c.seq, _decisions.c.request_id, _decisions.c.body).where(
                    _decisions.c.request_id.in_(chunk)
                )
                decisions.extend(
                    (seq, _load_body(text, request_id))
                    for seq, request_id, text in conn.execute(query)
                )
        out: list[FeedbackRow] = []
        for _, body in sorted(decisions, key=lambda item: item[0]):
            fb = latest[body["request_id"]]
            for index, (features, label) in enumerate(
                zip(body["input"], fb["labels"], strict=False)
            ):
                out.append(
                    FeedbackRow(
                        request_id=body["request_id"],
                        row_index=index,
                        features=features,
                        label=label,
                        model_ref=body["model_ref"],
                        analyst=fb["analyst"],
                        labelled_at=datetime.fromisoformat(fb["created_at"]),
                    )
                )
        return out

    def verify(self, expected_head: tuple[int, str] | None = None) -> DecisionVerifyReport:
        """Check both chains row by row and name the first row that does not hold.

        Reads raw rows, so a row edited into nonsense is reported, not raised.

        Parameters
        ----------
        expected_head:
            A ``head()`` saved earlier outside this database; the chain must still hold that
            row with that hash, which catches rows removed from the end.
        """
        problems: list[LogProblem] = []
        counts: dict[ChainName, int] = {}
        with self._engine.connect() as conn:
            for chain in _TABLES:
                counts[chain], hashes = _verify_chain(conn, chain, problems, expected_head)
                if chain == "decisions" and expected_head is not None:
                    seq, digest = expected_head
                    if seq > 0 and hashes.get(seq) != digest:
                        _found(
                            problems,
                            chain,
                            seq,
                            None,
                            f"decision {seq} does not match the saved head: "
                            "rows were removed from the end or rewritten",
                        )
            orphans = conn.execute(
                select(_feedback.c.seq, _feedback.c.request_id)
                .where(_feedback.c.request_id.not_in(select(_decisions.c.request_id)))
                .order_by(_feedback.c.seq)
            )
            for seq, request_id in orphans:
                _found(
                    problems,
                    "decision_feedback",
                    seq,
                    request_id,
                    f"feedback {seq} is for request {request_id}, which the log does not hold",
                )
        return DecisionVerifyReport(
            decisions=counts["decisions"], feedback=counts["decision_feedback"], problems=problems
        )


def _verify_chain(
    conn: Connection,
    chain: ChainName,
    problems: list[LogProblem],
    expected_head: tuple[int, str] | None,
) -> tuple[int, dict[int, str]]:
    """Walk one chain; return its row count and, if a head is to be checked, its hash."""
    table = _TABLES[chain]
    what = "decision" if chain == "decisions" else "feedback"
    prev_hash, prev_seq, count = GENESIS, 0, 0
    wanted = expected_head[0] if expected_head is not None and chain == "decisions" else None
    hashes: dict[int, str] = {}
    for row in conn.execute(select(table).order_by(table.c.seq)).mappings():
        count += 1
        seq, request_id = int(row["seq"]), str(row["request_id"])

        def found(message: str, seq: int = seq, request_id: str = request_id) -> None:
            _found(problems, chain, seq, request_id, message)

        if seq > prev_seq + 1:
            gap = f"{what} {prev_seq + 1}" + (f"-{seq - 1}" if seq > prev_seq + 2 else "")
            found(f"{chain}: {gap} missing before {what} {seq}: deleted", seq=prev_seq + 1)
        elif seq <= prev_seq:
            found(f"{what} {seq} appears out of order after {what} {prev_seq}")
        if row["prev_hash"] != prev_hash:
            found(
                f"{what} {seq} (request {request_id}) does not link to the row before it: "
                "a row was deleted, inserted or reordered"
            )
        try:
            text = str(row["body"])
            expected = chain_hash(
                chain, int(row["format"]), seq, text.encode("utf-8"), str(row["prev_hash"])
            )
            body = json.loads(text) if expected == row["hash"] else None
        except (ValueError, TypeError) as exc:
            found(f"{what} {seq} (request {request_id}) is unreadable: {exc}")
        else:
            if expected != row["hash"]:
                found(
                    f"{what} {seq} (request {request_id}) was edited or moved: "
                    "its content does not match its hash"
                )
            elif not isinstance(body, dict) or any(
                body.get(column) != row[column] for column in _INDEXED[chain]
            ):
                found(
                    f"{what} {seq} (request {request_id}) was edited: "
                    "its indexed columns differ from its hashed content"
                )
            elif chain == "decisions" and body.get("input_sha256") != _input_digest(body):
                found(f"{what} {seq} (request {request_id}): input_sha256 does not match input")
        if wanted == seq:
            hashes[seq] = str(row["hash"])
        prev_hash, prev_seq = str(row["hash"]), seq
    return count, hashes


def _input_digest(body: dict[str, Any]) -> str | None:
    try:
        return sha256_json(body.get("input"))
    except (TypeError, ValueError):
        return None


def _found(
    problems: list[LogProblem],
    chain: ChainName,
    seq: int | None,
    request_id: str | None,
    message: str,
) -> None:
    if len(problems) < _MAX_PROBLEMS:
        problems.append(LogProblem(table=chain, seq=seq, request_id=request_id, message=message))


def _load_body(text: str, request_id: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise IntegrityError(f"the log row of request {request_id} is unreadable: {exc}") from exc
    if not isinstance(body, dict):
        raise IntegrityError(f"the log row of request {request_id} is not a JSON object")
    return body
