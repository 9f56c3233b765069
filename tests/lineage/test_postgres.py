"""The same store on PostgreSQL: append-only in the database itself, and verifiable.

Runs when ``MLWARDEN_TEST_POSTGRES_URL`` names a database whose user may create databases
(CI starts a local server and sets it); skips otherwise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlwarden.lineage import LineageStore, verify_store
from mlwarden.pipeline import LocalExecutor, PipelineSpec

URL = os.environ.get("MLWARDEN_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(URL is None, reason="MLWARDEN_TEST_POSTGRES_URL is not set")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    assert URL is not None
    name = f"mlwarden_{uuid.uuid4().hex[:12]}"
    admin = create_engine(URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield make_url(URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


def test_records_chain_and_verify_on_postgres(tmp_path: Path, pg_url: str) -> None:
    store = LineageStore(tmp_path, url=pg_url)
    store.put_artifact(b"blob", name="b", media_type="x")
    store.append("run_started", "r", {"x": 1.5})
    records = store.records()
    assert [r.seq for r in records] == [1, 2]
    assert records[1].prev_hash == records[0].hash
    assert verify_store(store).summary() == (
        "ok: 2 records, 1 artifacts; database integrity check skipped (postgresql has no PRAGMA)"
    )
    store.close()


def test_postgres_refuses_update_delete_and_truncate(tmp_path: Path, pg_url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    store = LineageStore(tmp_path, url=pg_url)
    store.append("run_started", "r", {})
    engine = create_engine(pg_url)
    for statement in (
        "UPDATE records SET subject = 'x'",
        "DELETE FROM records",
        "TRUNCATE records",
    ):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    engine.dispose()
    assert verify_store(store).ok
    store.close()


def test_verify_catches_an_edit_made_behind_the_trigger(tmp_path: Path, pg_url: str) -> None:
    from sqlalchemy import create_engine, text

    store = LineageStore(tmp_path, url=pg_url)
    for i in range(3):
        store.append("run_started", f"r{i}", {"i": i})
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE records DISABLE TRIGGER records_append_only"))
        conn.execute(text("UPDATE records SET payload = :p WHERE seq = 2"), {"p": '{"i":7}'})
    engine.dispose()
    report = verify_store(store)
    assert report.problems[0].seq == 2
    store.close()


def test_a_pipeline_runs_and_reruns_cached_on_postgres(
    tmp_path: Path, pg_url: str, fast_spec: PipelineSpec
) -> None:
    store = LineageStore(tmp_path, url=pg_url)
    first = LocalExecutor(store).run(fast_spec)
    assert first.status == "completed" and first.model_version == "german@1"
    again = LocalExecutor(store).run(fast_spec)
    assert again.executed == []
    assert verify_store(store).ok
    store.close()


def _edit_behind_the_trigger(pg_url: str, statement: str, **params: object) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE records DISABLE TRIGGER records_append_only"))
        conn.execute(text(statement), params)
    engine.dispose()


def test_another_spelling_of_the_same_time_fails_verify_on_postgres(
    tmp_path: Path, pg_url: str
) -> None:
    store = LineageStore(tmp_path, url=pg_url)
    for i in range(3):
        store.append("run_started", f"r{i}", {"i": i})
    stored = store.records()[1].created_at.isoformat()
    _edit_behind_the_trigger(
        pg_url, "UPDATE records SET created_at = :t WHERE seq = 2", t=stored.replace("T", " ")
    )
    report = verify_store(store)
    assert report.problems[0].seq == 2
    assert "not in canonical form: stored created_at differs" in report.summary()
    store.close()


def test_a_payload_that_is_not_json_is_reported_and_refused_on_postgres(
    tmp_path: Path, pg_url: str
) -> None:
    from mlwarden.errors import IntegrityError

    store = LineageStore(tmp_path, url=pg_url)
    store.append("run_started", "r", {"i": 1})
    _edit_behind_the_trigger(pg_url, "UPDATE records SET payload = '{\"i\":' WHERE seq = 1")
    assert "record 1 is unreadable: payload is not valid JSON" in verify_store(store).summary()
    with pytest.raises(IntegrityError, match="record 1: payload is not valid JSON"):
        store.records()
    store.close()
