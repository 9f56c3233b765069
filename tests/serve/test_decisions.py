"""The decision log: queued appends land in order, feedback links, and tampering is named."""

from __future__ import annotations

import itertools
import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mlwarden.errors import DataError, IntegrityError, RecordNotFoundError, StoreError
from mlwarden.lineage import sha256_json
from mlwarden.serve._decisions import (
    DecisionLog,
    DecisionLogClosedError,
    DecisionNotFoundError,
    DecisionRecord,
    DecisionWriteError,
    FeedbackError,
    ShadowResult,
)
from mlwarden.serve._keys import KeyStore

SHA = "a" * 64
HEAD = "b" * 64


def _record(i: int = 0, rows: int = 1, **extra: Any) -> DecisionRecord:
    fields: dict[str, Any] = {
        "client": "0123456789abcdef",
        "model_ref": "fraud@3",
        "model_sha256": SHA,
        "input": [{"amount": 10.5 * (i + r), "country": "FR", "n": i} for r in range(rows)],
        "output": {"label": ["fraud" if i % 2 else "ok"] * rows, "proba": [0.25] * rows},
        "guards": {"schema": "pass", "ood": {"score": 0.1, "verdict": "pass"}},
        "fail_open": {"extraction": False},
        "latency_ms": 3.25,
        "lineage_head": HEAD,
        "shadow": [ShadowResult(model_ref="fraud@4", output={"label": ["ok"] * rows})],
    }
    fields.update(extra)
    return DecisionRecord(**fields)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store" / "serve.db"


@pytest.fixture
def log(db: Path) -> Iterator[DecisionLog]:
    opened = DecisionLog(db)
    yield opened
    opened.close()


class HeldWriter:
    """Holds the background writer inside its first batch until released, as a slow disk would."""

    def __init__(self, log: DecisionLog, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        real = log._write_batch

        def held(batch: list[DecisionRecord]) -> int:
            self.entered.set()
            assert self.release.wait(30)
            return real(batch)

        monkeypatch.setattr(log, "_write_batch", held)


def _raw(db: Path) -> sqlite3.Connection:
    """A direct connection, with the append-only triggers dropped, as an attacker would."""
    conn = sqlite3.connect(db)
    for table, op in itertools.product(("decisions", "decision_feedback"), ("update", "delete")):
        conn.execute(f"DROP TRIGGER {table}_no_{op}")
    return conn


def test_a_record_round_trips_through_append_flush_get(log: DecisionLog) -> None:
    record = _record(1, rows=2)
    assert len(record.request_id) == 32
    assert record.input_sha256 == sha256_json(record.input)
    assert log.append(record)
    log.flush()
    got = log.get(record.request_id)
    assert got == record
    assert got is not None and got.feedback == []
    assert log.get("f" * 32) is None


def test_input_sha256_is_computed_or_checked() -> None:
    record = _record()
    assert DecisionRecord(**record.model_dump()).input_sha256 == record.input_sha256
    with pytest.raises(ValidationError, match="not the sha256 of the input"):
        DecisionRecord(**{**record.model_dump(), "input_sha256": SHA})
    with pytest.raises(ValidationError):
        _record(model_ref="no-version")
    with pytest.raises(ValidationError):
        _record(latency_ms=float("nan"))
    with pytest.raises(ValidationError):
        _record(created_at=datetime(2024, 1, 1))  # naive timestamps are refused


def test_many_appends_are_committed_in_few_batches_in_order(
    log: DecisionLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [_record(i) for i in range(1200)]
    writer = HeldWriter(log, monkeypatch)
    assert log.append(records[0])
    assert writer.entered.wait(30)
    for record in records[1:]:
        assert log.append(record)
    assert log.pending == 1200
    writer.release.set()
    log.flush()
    assert log.pending == 0
    assert log.batches == 4  # the first alone, then 1199 at most 500 a transaction
    recent = list(log.iter_recent(1200))
    assert [r.request_id for r in reversed(recent)] == [r.request_id for r in records]
    assert log.head()[0] == 1200
    assert log.verify().ok


def test_one_caller_appending_back_to_back_shares_transactions(db: Path) -> None:
    # Group commit: records a caller sends within the linger share one transaction, each
    # still committed and chained; without linger the writer may commit them one by one.
    log = DecisionLog(db, linger_s=0.2)
    records = [_record(i) for i in range(20)]
    for record in records:
        assert log.append(record)
    log.flush()
    assert log.batches <= 2
    assert [r.request_id for r in reversed(list(log.iter_recent(20)))] == [
        r.request_id for r in records
    ]
    assert log.verify().ok
    with pytest.raises(StoreError, match="linger_s >= 0"):
        DecisionLog(db, linger_s=-1)
    log.close()


def test_iter_recent_gives_the_newest_first(log: DecisionLog) -> None:
    records = [_record(i) for i in range(5)]
    for record in records:
        log.append(record)
    log.flush()
    assert [r.request_id for r in log.iter_recent(2)] == [
        records[4].request_id,
        records[3].request_id,
    ]
    assert list(log.iter_recent(0)) == []


def test_close_flushes_everything_queued(db: Path) -> None:
    log = DecisionLog(db)
    records = [_record(i) for i in range(300)]
    for record in records:
        log.append(record)
    log.close()
    log.close()  # idempotent
    with pytest.raises(DecisionLogClosedError):
        log.append(_record())
    reopened = DecisionLog(db)
    assert reopened.head()[0] == 300
    assert all(reopened.get(r.request_id) == r for r in records[::37])
    reopened.close()


def test_a_full_queue_drops_and_counts_never_silently(
    db: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = DecisionLog(db, max_queue=3, put_timeout_s=0.01)
    writer = HeldWriter(log, monkeypatch)
    assert log.append(_record(0))
    assert writer.entered.wait(30)  # the writer is stuck on it: the queue cannot drain
    accepted = [log.append(_record(i)) for i in range(1, 6)]
    assert accepted == [True, True, True, False, False]
    assert log.dropped == 2
    assert "dropped" in caplog.text
    writer.release.set()
    log.close()
    reopened = DecisionLog(db)
    assert reopened.head()[0] == 4
    reopened.close()


def test_records_that_cannot_be_stored_are_counted_and_reported(
    log: DecisionLog, caplog: pytest.LogCaptureFixture
) -> None:
    first = _record(1)
    log.append(first)
    log.flush()
    caplog.set_level(logging.ERROR)
    log.append(first)  # the same request id again
    log.append(_record(2))
    with pytest.raises(DecisionWriteError, match="1 decision could not be stored"):
        log.flush()
    assert log.failed == 1
    assert first.request_id in caplog.text
    assert log.head()[0] == 2
    log.flush()  # reported once


class Clock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_database_that_refuses_writes_stalls_the_log_and_loses_nothing(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    clock = Clock()
    log = DecisionLog(db, max_delay_s=2.0, monotonic=clock)
    refusing, retried = threading.Event(), threading.Event()
    refusing.set()
    real = log._writing
    attempts: list[float] = []

    def writing(chain: Any, busy_s: float | None = None) -> Any:
        if refusing.is_set():
            attempts.append(clock.now)
            if len(attempts) >= 2:  # the first refusal is recorded before the writer retries
                retried.set()
            raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))
        return real(chain, busy_s)

    monkeypatch.setattr(log, "_writing", writing)
    record = _record(1)
    assert log.append(record)
    assert retried.wait(30)
    assert log.status().accepting  # waiting, but not yet longer than max_delay_s
    clock.now += 2.5
    state = log.status()
    assert not state.accepting and state.backlog == 1 and "database is locked" in str(state.reason)
    assert not log.healthy()
    refusing.clear()
    log.flush()
    assert log.failed == 0 and log.get(record.request_id) is not None
    assert log.status().accepting
    log.close()


def test_a_full_backlog_stalls_the_log(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = DecisionLog(db, max_queue=2, put_timeout_s=0.0)
    writer = HeldWriter(log, monkeypatch)
    log.append(_record(0))
    assert writer.entered.wait(30)
    log.append(_record(1))
    assert log.status().accepting
    log.append(_record(2))
    state = log.status()
    assert not state.accepting and "backlog is full" in str(state.reason)
    writer.release.set()
    log.close()


def test_a_lagging_writer_slows_appends_down_until_it_catches_up(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    log = DecisionLog(db, max_delay_s=20.0, monotonic=clock)
    writer = HeldWriter(log, monkeypatch)
    first, second = _record(0), _record(1)
    log.append(first)
    assert writer.entered.wait(30)
    clock.now += 6.0  # behind (over a quarter of max_delay_s), not stalled (under all of it)
    assert log.status().accepting
    returned = threading.Event()
    appender = threading.Thread(target=lambda: (log.append(second), returned.set()))
    appender.start()
    assert not returned.wait(0.5)  # waiting for the writer (at most max_delay_s / 2)
    writer.release.set()
    assert returned.wait(30)
    appender.join()
    log.flush()
    assert log.throttled == 1 and log.dropped == 0
    assert log.get(first.request_id) is not None and log.get(second.request_id) is not None
    log.close()


def test_a_stalled_writer_is_not_waited_for_its_policy_decides(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    log = DecisionLog(db, max_delay_s=2.0, monotonic=clock)
    writer = HeldWriter(log, monkeypatch)
    log.append(_record(0))
    assert writer.entered.wait(30)
    clock.now += 2.5
    assert not log.status().accepting
    assert log.append(_record(1))  # queued at once: a fail-open server keeps answering
    assert log.throttled == 0
    writer.release.set()
    log.close()


def test_feedback_links_to_its_decision_and_becomes_training_rows(log: DecisionLog) -> None:
    a, b, c = _record(1, rows=2), _record(2), _record(3)
    for record in (a, b, c):
        log.append(record)
    # No flush: feedback waits for the writer when the decision is still queued.
    fb = log.feedback(a.request_id, ["fraud", "ok"], "analyst0000000a")
    assert fb.request_id == a.request_id and fb.labels == ["fraud", "ok"]
    log.feedback(c.request_id, "ok", "analyst0000000a")  # one row: a bare label is fine
    log.feedback(a.request_id, ["ok", "ok"], "analyst0000000b")  # supersedes the first
    got = log.get(a.request_id)
    assert got is not None
    assert [f.labels for f in got.feedback] == [["fraud", "ok"], ["ok", "ok"]]
    assert [f.analyst for f in got.feedback] == ["analyst0000000a", "analyst0000000b"]
    rows = log.feedback_rows()
    assert [(r.request_id, r.row_index, r.label, r.analyst) for r in rows] == [
        (a.request_id, 0, "ok", "analyst0000000b"),
        (a.request_id, 1, "ok", "analyst0000000b"),
        (c.request_id, 0, "ok", "analyst0000000a"),
    ]
    assert rows[0].features == a.input[0] and rows[1].features == a.input[1]
    assert rows[2].model_ref == "fraud@3"
    assert log.verify().summary() == "ok: 3 decisions, 3 feedback"


def test_feedback_for_an_unknown_request_is_a_clear_error(log: DecisionLog) -> None:
    with pytest.raises(DecisionNotFoundError, match="no logged decision has request id") as info:
        log.feedback("0" * 32, ["ok"], "analyst")
    assert isinstance(info.value, RecordNotFoundError)


def test_feedback_needs_one_label_per_input_row(log: DecisionLog) -> None:
    record = _record(rows=3)
    log.append(record)
    with pytest.raises(FeedbackError, match="3 input rows, got 2 labels") as info:
        log.feedback(record.request_id, ["a", "b"], "analyst")
    assert isinstance(info.value, DataError)
    with pytest.raises(FeedbackError, match="unusable"):
        log.feedback(record.request_id, ["a", "b", "c"], "")


def test_the_database_refuses_update_and_delete(log: DecisionLog, db: Path) -> None:
    record = _record()
    log.append(record)
    log.flush()
    log.feedback(record.request_id, ["ok"], "analyst")
    conn = sqlite3.connect(db)
    for statement in (
        "UPDATE decisions SET client = 'x'",
        "DELETE FROM decisions",
        "UPDATE decision_feedback SET analyst = 'x'",
        "DELETE FROM decision_feedback",
    ):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(statement)
    conn.close()
    assert log.verify().ok


def _filled(log: DecisionLog, n: int = 5) -> list[DecisionRecord]:
    records = [_record(i) for i in range(n)]
    for record in records:
        log.append(record)
    log.flush()
    return records


def test_an_edited_output_is_named_by_verify(log: DecisionLog, db: Path) -> None:
    records = _filled(log)
    conn = _raw(db)
    body = json.loads(conn.execute("SELECT body FROM decisions WHERE seq = 3").fetchone()[0])
    body["output"]["label"] = ["fraud" if body["output"]["label"] == ["ok"] else "ok"]
    conn.execute("UPDATE decisions SET body = ? WHERE seq = 3", (json.dumps(body),))
    conn.commit()
    conn.close()
    report = log.verify()
    assert not report.ok
    first = report.problems[0]
    assert (first.table, first.seq, first.request_id) == ("decisions", 3, records[2].request_id)
    assert "decision 3" in report.summary() and "edited" in report.summary()


def test_an_edited_index_column_is_named_by_verify(log: DecisionLog, db: Path) -> None:
    records = _filled(log)
    conn = _raw(db)
    conn.execute("UPDATE decisions SET client = 'someone-else' WHERE seq = 2")
    conn.commit()
    conn.close()
    report = log.verify()
    assert [(p.seq, p.request_id) for p in report.problems] == [(2, records[1].request_id)]
    assert "indexed columns" in report.problems[0].message


def test_a_deleted_decision_and_its_orphaned_feedback_are_named(log: DecisionLog, db: Path) -> None:
    records = _filled(log)
    log.feedback(records[1].request_id, ["ok"], "analyst")
    conn = _raw(db)
    conn.execute("DELETE FROM decisions WHERE seq = 2")
    conn.commit()
    conn.close()
    report = log.verify()
    assert report.problems[0].seq == 2
    assert "decision 2 missing" in report.problems[0].message
    assert any(
        p.table == "decision_feedback" and p.request_id == records[1].request_id
        for p in report.problems
    )


def test_rows_cut_off_the_end_are_caught_with_a_saved_head(log: DecisionLog, db: Path) -> None:
    _filled(log)
    saved = log.head()
    assert log.verify(saved).ok
    conn = _raw(db)
    conn.execute("DELETE FROM decisions WHERE seq = 5")
    conn.commit()
    conn.close()
    assert log.verify().ok  # without an anchor a clean cut is invisible
    report = log.verify(saved)
    assert report.problems[0].seq == 5 and "saved head" in report.problems[0].message


def test_an_edited_feedback_row_is_named(log: DecisionLog, db: Path) -> None:
    record = _filled(log, 1)[0]
    log.feedback(record.request_id, ["fraud"], "analyst")
    conn = _raw(db)
    conn.execute("UPDATE decision_feedback SET body = replace(body, 'fraud', 'ok')")
    conn.commit()
    conn.close()
    report = log.verify()
    first = report.problems[0]
    assert (first.table, first.seq, first.request_id) == ("decision_feedback", 1, record.request_id)


def test_an_unreadable_row_is_reported_by_verify_and_raised_by_get(
    log: DecisionLog, db: Path
) -> None:
    records = _filled(log, 2)
    conn = _raw(db)
    conn.execute("UPDATE decisions SET body = '{not json' WHERE seq = 1")
    conn.commit()
    conn.close()
    first = log.verify().problems[0]
    assert (first.seq, first.request_id) == (1, records[0].request_id)
    with pytest.raises(IntegrityError):
        log.get(records[0].request_id)


def test_keys_and_decisions_share_one_database_file(db: Path) -> None:
    keys = KeyStore(db)
    log = DecisionLog(db)
    key_id = keys.create("predict", "app").split("_")[1]
    record = _record(client=key_id)
    log.append(record)
    log.flush()
    assert log.get(record.request_id) == record
    assert [k.key_id for k in keys.list()] == [key_id]
    log.close()
    keys.close()
    tables = sqlite3.connect(db)
    names = {row[0] for row in tables.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    tables.close()
    assert {"api_keys", "decisions", "decision_feedback"} <= names


def test_bad_settings_and_unopenable_paths_are_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="max_batch"):
        DecisionLog(tmp_path / "a.db", max_batch=0)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open the decision log"):
        DecisionLog(blocker / "serve.db")


def test_feedback_timestamps_come_from_the_clock(db: Path) -> None:
    when = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    log = DecisionLog(db, clock=lambda: when)
    record = _filled(log, 1)[0]
    assert log.feedback(record.request_id, ["ok"], "analyst").created_at == when
    assert log.feedback_rows()[0].labelled_at == when
    log.close()


PG_URL = os.environ.get("MLWARDEN_TEST_POSTGRES_URL")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    if PG_URL is None:
        pytest.skip("MLWARDEN_TEST_POSTGRES_URL is not set")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"mlwarden_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


def test_keys_and_decisions_on_postgres(pg_url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    keys = KeyStore(pg_url)
    key = keys.create("feedback", "analyst")
    principal = keys.authenticate(key)
    assert principal is not None and principal.allows("feedback")
    keys.revoke(principal.key_id)
    assert keys.authenticate(key) is None
    log = DecisionLog(pg_url)
    records = [_record(i) for i in range(20)]
    for record in records:
        log.append(record)
    log.feedback(records[3].request_id, ["ok"], principal.key_id)
    got = log.get(records[3].request_id)
    assert got is not None and [f.labels for f in got.feedback] == [["ok"]]
    assert got.model_copy(update={"feedback": []}) == records[3]
    assert log.verify().summary() == "ok: 20 decisions, 1 feedback"
    assert [r.request_id for r in log.feedback_rows()] == [records[3].request_id]
    log.close()
    keys.close()
    engine = create_engine(pg_url)
    for statement in (
        "UPDATE decisions SET client = 'x'",
        "DELETE FROM decisions",
        "TRUNCATE decision_feedback",
        "DELETE FROM api_keys",
        "UPDATE api_keys SET role = 'admin'",
        "UPDATE api_keys SET revoked_at = NULL",
    ):
        with pytest.raises(DBAPIError, match=r"append-only|api key"), engine.begin() as conn:
            conn.execute(text(statement))
    engine.dispose()


def test_feedback_on_a_locked_database_is_a_store_error_after_its_timeout(
    log: DecisionLog, db: Path
) -> None:
    record = _record(1)
    log.append(record)
    log.flush()
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError, match="was not recorded"):
        log.feedback(record.request_id, ["ok"], "analyst", timeout_s=0.2)
    lock.execute("ROLLBACK")
    lock.close()
    assert log.feedback(record.request_id, ["ok"], "analyst").labels == ["ok"]
    log.append(_record(2))
    log.flush()  # the writer's own connection kept its long busy timeout
    assert log.failed == 0
