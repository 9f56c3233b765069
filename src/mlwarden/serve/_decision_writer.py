"""The decision log's background writer: a bounded queue drained in batches by one thread.

Writing stays off the request path: ``append`` puts the record on the queue and returns. When
the queue is full, ``append`` waits up to ``put_timeout_s`` for room, then refuses the record
and counts it in ``dropped``; a record the batch writer cannot store is counted in ``failed``
and the next ``raise_failures`` raises :class:`DecisionWriteError`. A database that refuses
writes for a while (:class:`Transient`) does not lose the batch: it is retried with backoff
while later records wait in the bounded queue.

Group commit: once a record is queued the writer lingers up to ``linger_s`` (the log's default
is 20 ms, far below ``max_delay_s``) for more to join its batch, so one caller sending requests
back to back shares one transaction among several records instead of paying one each.

Back-pressure: request threads outnumber the writer, and on one interpreter lock they can
starve it until the log counts as stalled and a fail-closed server refuses every request.
So while the writer is healthy but its oldest record has waited more than a quarter of
``max_delay_s``, ``append`` first waits (up to half of ``max_delay_s``) for it to catch up:
under overload requests slow down instead of failing. A writer that is retrying, stopped or
already stalled is not waited for; the log's status and its failure policy decide then.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from mlwarden.errors import MlwardenError
from mlwarden.serve._decision_records import (
    DecisionLogClosedError,
    DecisionWriteError,
    LogStatus,
    Queued,
)

_log = logging.getLogger("mlwarden.serve._decisions")


class Transient(MlwardenError):
    """The database refused a batch for now (locked, unreachable); the writer retries it."""


class BatchWriter:
    """Queue records and commit them in batches on one background thread.

    Parameters
    ----------
    write:
        Commits one batch; returns how many records could not be stored; raises
        :class:`Transient` when the database refuses for now.
    after_batch:
        Called on the writer thread after each batch with the number of batches so far
        (the log checkpoints from it); its errors are logged, never fatal.
    linger_s:
        How long the writer waits for a batch to fill before committing what it has.
    """

    def __init__(
        self,
        write: Callable[[list[Queued]], int],
        *,
        max_queue: int,
        max_batch: int,
        put_timeout_s: float,
        max_delay_s: float,
        monotonic: Callable[[], float],
        after_batch: Callable[[int], None] | None = None,
        linger_s: float = 0.0,
    ) -> None:
        self.max_delay_s = max_delay_s
        self._linger_s = linger_s
        self._write = write
        self._after_batch = after_batch
        self._monotonic = monotonic
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._put_timeout_s = put_timeout_s
        self._lock = threading.Lock()
        self._has_items = threading.Condition(self._lock)
        self._has_room = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        self._caught_up = threading.Condition(self._lock)  # a batch taken or written
        self._queue: deque[Queued] = deque()
        self._since: deque[float] = deque()  # when each queued record was appended
        self._inflight_since: float | None = None
        self._retrying: str | None = None  # why the batch in flight is being retried
        self._closing = False
        self._enqueued = 0
        self._processed = 0
        self.dropped = 0
        self.throttled = 0  # appends that waited for a lagging writer
        self.failed = 0
        self._failed_reported = 0
        self.batches = 0
        self._thread = threading.Thread(
            target=self._run, name="mlwarden-decision-writer", daemon=True
        )
        self._thread.start()

    @property
    def pending(self) -> int:
        """Records queued and not yet committed."""
        return self._enqueued - self._processed

    def status(self) -> LogStatus:
        """Whether records are being written in time; ``reason`` says why not."""
        with self._lock:
            backlog = self._enqueued - self._processed
            since = self._inflight_since
            if since is None and self._since:
                since = self._since[0]
            full = len(self._queue) >= self._max_queue
            retrying, closing = self._retrying, self._closing
        oldest = max(0.0, self._monotonic() - since) if since is not None else 0.0
        reason = None
        if closing:
            reason = "the decision log is closed"
        elif not self._thread.is_alive():
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

    def accepting(self) -> bool:
        """``status().accepting``, without building the status (asked on every request)."""
        with self._lock:
            since = self._inflight_since
            if since is None and self._since:
                since = self._since[0]
            full = len(self._queue) >= self._max_queue
            closing = self._closing
        if closing or full or not self._thread.is_alive():
            return False
        return since is None or self._monotonic() - since <= self.max_delay_s

    def _behind(self) -> bool:
        """Healthy but lagging: the oldest record waited past a quarter of ``max_delay_s``
        (and not past all of it). Called with the lock held."""
        since = self._inflight_since
        if since is None and self._since:
            since = self._since[0]
        if since is None or self._closing or self._retrying is not None:
            return False
        age = self._monotonic() - since
        return self.max_delay_s / 4 < age <= self.max_delay_s and self._thread.is_alive()

    def append(self, record: Queued) -> bool:
        """Queue ``record``; False (and counted) if the queue stayed full. Waits a while
        first when the writer lags (see the module's back-pressure)."""
        with self._lock:
            if self._closing:
                raise DecisionLogClosedError("the decision log is closed")
            if self._behind():
                self.throttled += 1
                self._caught_up.wait_for(lambda: not self._behind(), self.max_delay_s / 2)
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
                    self.dropped += 1
                    _log.warning("decision log queue full: dropped %s", record.request_id)
                    return False
            self._queue.append(record)
            self._since.append(self._monotonic())
            self._enqueued += 1
            if len(self._queue) in (1, self._max_batch):  # the writer waits for these two
                self._has_items.notify()
        return True

    def settle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for every record appended so far; True if all were handled."""
        with self._lock:
            target = self._enqueued
            return self._progress.wait_for(lambda: self._processed >= target, timeout_s)

    def close(self, timeout_s: float) -> bool:
        """Stop taking records, drain the queue and stop; False if it is already closing.

        Returns once the thread ended or ``timeout_s`` passed (``alive`` tells which).
        """
        with self._lock:
            already = self._closing
            self._closing = True
            self._has_items.notify_all()
            self._has_room.notify_all()
            self._caught_up.notify_all()
        if already:
            return False
        self._thread.join(timeout_s)
        return True

    @property
    def alive(self) -> bool:
        """Whether the writer thread still runs."""
        return self._thread.is_alive()

    def raise_failures(self) -> None:
        """Raise ``DecisionWriteError`` if records failed since the last call."""
        with self._lock:
            new = self.failed - self._failed_reported
            self._failed_reported = self.failed
        if new:
            raise DecisionWriteError(
                f"{new} decision{'s' if new != 1 else ''} could not be stored; "
                "the log names each request id"
            )

    def _run(self) -> None:
        while True:
            with self._lock:
                self._has_items.wait_for(lambda: bool(self._queue) or self._closing)
                if not self._queue:
                    return  # closing and drained
                if self._linger_s > 0 and len(self._queue) < self._max_batch:
                    self._has_items.wait_for(
                        lambda: len(self._queue) >= self._max_batch or self._closing,
                        self._linger_s,
                    )
                take = min(len(self._queue), self._max_batch)
                batch = [self._queue.popleft() for _ in range(take)]
                self._inflight_since = self._since[0]
                for _ in range(take):
                    self._since.popleft()
                self._has_room.notify_all()
                self._caught_up.notify_all()
            failed = self._write_with_retries(batch)
            with self._lock:
                self.batches += 1
                batches = self.batches
            if self._after_batch is not None:
                try:
                    self._after_batch(batches)
                except Exception:  # the writer must survive anything
                    _log.exception("decision log checkpoint after batch %d failed", batches)
            with self._lock:
                self._processed += len(batch)
                self.failed += failed
                self._inflight_since = None
                self._retrying = None
                self._progress.notify_all()
                self._caught_up.notify_all()

    def _write_with_retries(self, batch: list[Queued]) -> int:
        """Write ``batch``, retrying while the database refuses for now; unless closing."""
        delay = 0.05
        while True:
            try:
                return self._write(batch)
            except Transient as exc:
                with self._lock:
                    self._retrying = str(exc)
                    self._caught_up.notify_all()  # nobody waits for a writer that retries
                    if self._closing:
                        ids = ", ".join(r.request_id for r in batch)
                        _log.error("decision log closed while failing; not stored: %s", ids)
                        return len(batch)
                    self._has_items.wait_for(lambda: self._closing, delay)
                delay = min(2.0 * delay, 2.0)
