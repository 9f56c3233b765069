"""The decision log: one append-only, hash-chained record per served request, plus feedback.

Every answer the server gives is recorded with what was asked (input rows and their sha256),
by whom (the key id), of which model (``name@version``, its sha256, and the lineage store's head
when the model was loaded, which links the decision to the model's lineage), what every guard
said, which guards failed open, what shadow models answered, and how long it took. Analysts
later attach labels (feedback), which become training rows.

Writing stays off the request path (:mod:`mlwarden.serve._decision_writer`): ``append`` queues
the record and returns; one background thread commits queued records in batches. The server
queues a :class:`PendingDecision` of plain values, and the writer builds, serialises and hashes
its record. Nothing is lost without a count: a dropped record is counted in ``dropped``, one
the writer cannot store in ``failed`` (the next ``flush`` or ``close`` raises
:class:`DecisionWriteError`). A lagging writer slows ``append`` down (``throttled``).

:meth:`DecisionLog.status` says whether the log keeps up: it is *stalled* when its oldest
unwritten record has waited more than ``max_delay_s`` or the queue is full. The server asks it
before answering and refuses (or flags) requests while it is stalled, and ``/readyz`` reports
it, so a log that cannot write is never silently bypassed.

Storage: by default in the same SQLite file as the API keys (``serve.db``, WAL), as chains of
the one chain module (:mod:`mlwarden.serve._decision_chain`): decisions, feedback, and signed
checkpoints of both, written every ``checkpoint_every`` batches and on a clean ``close`` when
the log is given a signer, and kept in a checkpoint file beside the database. ``verify`` walks
the chains and names the first row that does not hold; the checkpoints (and witnesses: exported
checkpoint files kept elsewhere) also catch rows cut off the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import JsonValue, ValidationError
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as UniqueViolation
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from mlwarden._sql import create_tables, open_engine, sqlalchemy_url
from mlwarden.errors import IntegrityError, StoreError
from mlwarden.lineage import (
    GENESIS,
    Checkpoint,
    CheckpointSigner,
    Problem,
    SignatureTrust,
    read_checkpoint_file,
)
from mlwarden.serve._decision_chain import (
    CHAINS,
    DECISIONS,
    FEEDBACK,
    ChainName,
    DecisionVerifyReport,
    append_checkpoints,
    chain_hash,
    metadata,
    newest_checkpoints,
    verify_log,
)
from mlwarden.serve._decision_records import (
    DECISION_FORMAT,
    STORED,
    DecisionLogClosedError,
    DecisionNotFoundError,
    DecisionRecord,
    DecisionWriteError,
    Feedback,
    FeedbackError,
    FeedbackRow,
    LogStatus,
    PendingDecision,
    Queued,
    ShadowResult,
    _utcnow,
    labelled_rows,
    load_body,
    stored_body,
)
from mlwarden.serve._decision_writer import BatchWriter, Transient

__all__ = [
    "DECISION_FORMAT",
    "GENESIS",
    "ChainName",
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
    "PendingDecision",
    "ShadowResult",
    "chain_hash",
]

LogProblem = Problem  # one problem type for every chain; ``table`` names the decision chain
CHECKPOINT_EVERY = 100
LINGER_S = 0.02  # group commit: 20 ms of delay at most, far below max_delay_s
_log = logging.getLogger(__name__)
_decisions = DECISIONS.table
_feedback = FEEDBACK.table


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
        Source of feedback and checkpoint timestamps.
    monotonic:
        Seconds for record ages; tests inject a fake one.
    signer:
        Signs checkpoints of the chains (every ``checkpoint_every`` batches and on ``close``).
        Without one the log is unsigned: only a saved head or a witness finds rows cut off.
    checkpoint_every:
        Batches between two checkpoints.
    checkpoint_file:
        Where the newest checkpoints are also written; defaults to ``<file>.CHECKPOINT``
        beside a SQLite file, and to none for another database.
    linger_s:
        How long the writer waits for more records to share a transaction (group commit);
        at most a tenth of ``max_delay_s``.
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
        signer: CheckpointSigner | None = None,
        checkpoint_every: int = CHECKPOINT_EVERY,
        checkpoint_file: Path | None = None,
        linger_s: float = LINGER_S,
    ) -> None:
        if (
            max_queue < 1
            or not 1 <= max_batch <= 900
            or put_timeout_s < 0
            or not max_delay_s > 0
            or checkpoint_every < 1
            or linger_s < 0
        ):
            raise StoreError(
                "decision log needs max_queue >= 1, 1 <= max_batch <= 900, put_timeout_s >= 0, "
                "max_delay_s > 0, checkpoint_every >= 1 and linger_s >= 0"
            )
        self._clock = clock
        self._signer = signer
        self._checkpoint_every = checkpoint_every
        try:
            self.url, self._sqlite = sqlalchemy_url(url_or_path)
            self._engine = open_engine(self.url, self._sqlite, begin="manual")
            create_tables(metadata, self._engine)
        except (OSError, SQLAlchemyError) as exc:
            raise StoreError(f"cannot open the decision log {url_or_path}: {exc}") from exc
        if checkpoint_file is None and self._sqlite and "://" not in str(url_or_path):
            checkpoint_file = Path(f"{Path(url_or_path).resolve()}.CHECKPOINT")
        self.checkpoint_file = checkpoint_file
        self._writer = BatchWriter(
            lambda batch: self._write_batch(batch),
            max_queue=max_queue,
            max_batch=max_batch,
            put_timeout_s=put_timeout_s,
            max_delay_s=max_delay_s,
            monotonic=monotonic,
            after_batch=self._after_batch if signer is not None else None,
            linger_s=min(linger_s, max_delay_s / 10),
        )

    # -- counters ------------------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Records refused by ``append`` because the queue stayed full."""
        return self._writer.dropped

    @property
    def throttled(self) -> int:
        """Appends that waited for a lagging writer (back-pressure) before queuing."""
        return self._writer.throttled

    @property
    def failed(self) -> int:
        """Records the writer could not store (each one is logged with its request id)."""
        return self._writer.failed

    @property
    def pending(self) -> int:
        """Records queued and not yet committed."""
        return self._writer.pending

    @property
    def batches(self) -> int:
        """Transactions the writer has committed."""
        return self._writer.batches

    def status(self) -> LogStatus:
        """Whether records are being written in time; ``reason`` says why not."""
        return self._writer.status()

    def healthy(self) -> bool:
        """Open, writing and keeping up (``status().accepting``, without building it)."""
        return self._writer.accepting()

    # -- writing -------------------------------------------------------------------------------

    def append(self, record: DecisionRecord | PendingDecision) -> bool:
        """Queue ``record`` for the background writer; False (and counted) if it was dropped.

        A :class:`PendingDecision` (what the server queues) is built into its record by the
        writer; one that does not validate is counted in ``failed``, like one not stored.

        Raises
        ------
        DecisionLogClosedError
            After ``close``.
        """
        return self._writer.append(record)

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
        self._writer.raise_failures()

    def settle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for every record appended so far; True if all were handled."""
        return self._writer.settle(timeout_s)

    def _wait(self, timeout_s: float) -> None:
        if not self.settle(timeout_s):
            raise StoreError(f"the decision writer did not catch up within {timeout_s} s")

    def close(self, timeout_s: float = 30.0) -> None:
        """Commit everything queued, checkpoint, stop the writer and release connections.

        Idempotent. The closing checkpoint (with a signer) is what lets ``verify`` find rows
        cut off the end after a clean shutdown; failing to write it is logged, not raised.
        """
        if not self._writer.close(timeout_s):
            return
        if not self._writer.alive and self._signer is not None:
            try:
                self.checkpoint()
            except (StoreError, SQLAlchemyError, OSError) as exc:
                _log.error("decision log closed without its final checkpoint: %s", exc)
        self._engine.dispose()
        if self._writer.alive:
            raise StoreError(f"the decision writer did not finish within {timeout_s} s")
        self._writer.raise_failures()

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def checkpoint(self) -> list[Checkpoint]:
        """Sign the heads of both chains now (also every few batches and on ``close``).

        Returns the new checkpoints; none when neither chain moved since the last ones.

        Raises
        ------
        StoreError
            If the log has no signer, or the checkpoint could not be written.
        """
        if self._signer is None:
            raise StoreError("the decision log has no signer: its checkpoints cannot be signed")
        try:
            return append_checkpoints(
                self._engine, self._sqlite, self._signer, self.checkpoint_file, self._clock()
            )
        except SQLAlchemyError as exc:
            raise StoreError(f"decision log checkpoint not written: {exc}") from exc

    def _after_batch(self, batches: int) -> None:
        if batches % self._checkpoint_every == 0:
            self.checkpoint()

    def _write_batch(self, batch: list[Queued]) -> int:
        """Commit ``batch`` as one transaction; return how many records could not be stored.

        Runs on the writer thread: decisions queued as plain values are built, validated,
        serialised and hashed here, off the request path. The batch is inserted without
        looking its request ids up first; should one be taken already (the unique constraint
        refuses the insert), the batch is written again with the ids checked one by one, the
        duplicates left out and counted.
        """
        bodies: list[tuple[DecisionRecord, dict[str, Any], bytes]] = []
        failed = 0
        for item in batch:
            try:
                record = item.record() if isinstance(item, PendingDecision) else item
                bodies.append((record, *stored_body(record, exclude={"feedback"})))
            except (TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
                failed += 1
                _log.error("decision %s not stored: not a valid record: %s", item.request_id, exc)
        if not bodies:
            return failed
        ids = [record.request_id for record, _, _ in bodies]
        try:
            try:
                return failed + self._insert(bodies, checked=False)
            except UniqueViolation:
                return failed + self._insert(bodies, checked=True)
        except OperationalError as exc:
            _log.warning("decision log write refused, will retry %d records: %s", len(ids), exc)
            raise Transient(f"database refused the write: {str(exc.orig)[:200]}") from exc
        except Exception:  # the writer must survive anything; every record is counted
            _log.exception("decision log write failed; not stored: %s", ", ".join(ids))
            return len(batch)

    def _insert(
        self, bodies: list[tuple[DecisionRecord, dict[str, Any], bytes]], *, checked: bool
    ) -> int:
        """Chain and insert ``bodies`` in one transaction; return the duplicates left out.

        ``checked``: look the request ids up first and leave out those the log (or the batch
        itself) already holds; unchecked, a duplicate makes the insert raise.
        """
        failed = 0
        with self._writing("decisions") as (conn, seq, prev):
            seen: set[str] = set()
            if checked:
                ids = [record.request_id for record, _, _ in bodies]
                seen.update(
                    conn.execute(
                        select(_decisions.c.request_id).where(_decisions.c.request_id.in_(ids))
                    ).scalars()
                )
            rows = []
            for record, data, body in bodies:
                if checked:
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
        return failed

    def _writing(
        self, chain: ChainName, busy_s: float | None = None
    ) -> AbstractContextManager[tuple[Connection, int, str]]:
        """A write transaction holding ``chain``'s lock, with its newest seq and hash."""
        return CHAINS[chain].appending(self._engine, self._sqlite, busy_s=busy_s)

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
            fb_data, fb_bytes = stored_body(fb)
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
            return DECISIONS.head(conn)

    def _decision_body(self, request_id: str) -> dict[str, Any] | None:
        with self._engine.connect() as conn:
            text = conn.execute(
                select(_decisions.c.body).where(_decisions.c.request_id == request_id)
            ).scalar()
        return load_body(text, request_id) if text is not None else None

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

    def labelled(self, newest: int | None = None) -> list[DecisionRecord]:
        """Decisions that have feedback (the ``newest`` of them, or all), in decision order."""
        query = select(_decisions).where(
            _decisions.c.request_id.in_(select(_feedback.c.request_id))
        )
        if newest is None:
            return self._read(query.order_by(_decisions.c.seq))
        return self._read(query.order_by(_decisions.c.seq.desc()).limit(max(newest, 0)))[::-1]

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
                    by_request[request_id].append(load_body(text, request_id))
        records = []
        for row in rows:
            body = load_body(row["body"], row["request_id"])
            try:
                records.append(
                    DecisionRecord.model_validate(
                        {**body, "feedback": by_request[row["request_id"]]}, context=STORED
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
                latest[request_id] = load_body(text, request_id)
            ids = list(latest)
            decisions: list[tuple[int, dict[str, Any]]] = []
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query = select(_decisions.c.seq, _decisions.c.request_id, _decisions.c.body).where(
                    _decisions.c.request_id.in_(chunk)
                )
                decisions.extend(
                    (seq, load_body(text, request_id))
                    for seq, request_id, text in conn.execute(query)
                )
        return labelled_rows(sorted(decisions, key=lambda item: item[0]), latest)

    def verify(
        self,
        expected_head: tuple[int, str] | None = None,
        *,
        trust: SignatureTrust | None = None,
        witnesses: Iterable[Path] = (),
    ) -> DecisionVerifyReport:
        """Check every chain row by row, the checkpoints and their file; name what does not hold.

        Reads raw rows, so a row edited into nonsense is reported, not raised.

        Parameters
        ----------
        expected_head:
            A ``head()`` saved earlier outside this database; the chain must still hold that
            row with that hash, which catches rows removed from the end.
        trust:
            Who may sign checkpoints; without it their signatures are not checked (and the
            report says so).
        witnesses:
            Checkpoint files exported earlier and kept elsewhere: both chains must still hold
            what they witnessed.

        Raises
        ------
        IntegrityError
            If a witness file cannot be read as a checkpoint file.
        """
        witnessed = [(Path(p), read_checkpoint_file(Path(p), "witness")) for p in witnesses]
        return verify_log(
            self._engine,
            self._sqlite,
            checkpoint_file=self.checkpoint_file,
            expected_head=expected_head,
            trust=trust,
            witnesses=witnessed,
        )

    def newest_checkpoints(self) -> list[Checkpoint]:
        """The newest checkpoint of each chain held in the log: what a witness keeps.

        Raises
        ------
        IntegrityError
            If a checkpoint row does not parse (run ``verify``).
        """
        with self._engine.connect() as conn:
            return newest_checkpoints(conn)
