"""The lineage store is append-only, hash-chained, and verification names the first bad record."""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlwarden.errors import IntegrityError, RecordNotFoundError, StoreError
from mlwarden.lineage import LineageStore, verify_store


def _fill(store: LineageStore, n: int = 6) -> list[str]:
    shas = []
    for i in range(n):
        shas.append(store.put_artifact(f"blob {i}".encode() * 50, name=f"b{i}", media_type="x"))
        store.append("run_started", f"run{i}", {"i": i, "note": "é ✓"})
    return shas


def _raw(store: LineageStore) -> sqlite3.Connection:
    """A direct connection, with the append-only triggers dropped, as an attacker would."""
    conn = sqlite3.connect(store.root / "lineage.db")
    conn.execute("DROP TRIGGER records_no_update")
    conn.execute("DROP TRIGGER records_no_delete")
    return conn


def test_a_fresh_store_verifies_and_counts_records_and_artifacts(store: LineageStore) -> None:
    _fill(store)
    report = verify_store(store)
    assert report.ok
    assert report.summary() == "ok: 12 records, 6 artifacts"


def test_records_chain_each_to_the_previous_hash(store: LineageStore) -> None:
    _fill(store, 3)
    records = store.records()
    assert [r.seq for r in records] == list(range(1, 7))
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
    assert all(r.expected_hash() == r.hash for r in records)


def test_the_database_refuses_update_and_delete(store: LineageStore) -> None:
    _fill(store, 2)
    conn = sqlite3.connect(store.root / "lineage.db")
    for statement in ("UPDATE records SET subject = 'x' WHERE seq = 1", "DELETE FROM records"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(statement)
    conn.close()
    assert verify_store(store).ok


def test_a_failed_transaction_records_nothing(store: LineageStore) -> None:
    _fill(store, 1)
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.append("run_started", "a", {})
        tx.append("run_started", "b", {})
        raise RuntimeError("crash mid-transaction")
    assert [r.subject for r in store.records("run_started")] == ["run0"]
    assert verify_store(store).ok


def test_the_same_bytes_are_stored_and_recorded_once(store: LineageStore) -> None:
    a = store.put_artifact(b"same", name="one", media_type="x")
    b = store.put_artifact(b"same", name="two", media_type="x")
    assert a == b
    assert len(store.records("artifact")) == 1


def test_reading_an_artifact_checks_its_hash(store: LineageStore) -> None:
    sha = store.put_artifact(b"payload", name="p", media_type="x")
    path = store.artifacts.path(sha)
    path.chmod(0o644)
    path.write_bytes(b"pAyload")
    with pytest.raises(IntegrityError, match=sha[:12]):
        store.read_artifact(sha)


def test_verify_names_an_edited_record(store: LineageStore) -> None:
    _fill(store)
    with _raw(store) as conn:
        conn.execute("""UPDATE records SET payload = '{"i":99,"note":"x"}' WHERE seq = 4""")
    report = verify_store(store)
    assert not report.ok
    assert report.problems[0].seq == 4
    assert "record 4 (run_started) was edited" in report.summary()


def test_verify_names_a_deleted_record(store: LineageStore) -> None:
    _fill(store)
    with _raw(store) as conn:
        conn.execute("DELETE FROM records WHERE seq = 5")
    report = verify_store(store)
    assert report.problems[0].seq == 5
    assert "record 5 missing" in report.summary()


def test_verify_names_records_cut_off_the_end(store: LineageStore) -> None:
    _fill(store)
    with _raw(store) as conn:
        conn.execute("DELETE FROM records WHERE seq >= 11")
    report = verify_store(store)
    assert "records 11-12 missing from the end" in report.summary()


def test_verify_names_two_swapped_records(store: LineageStore) -> None:
    _fill(store)
    with _raw(store) as conn:
        conn.execute("UPDATE records SET seq = -1 WHERE seq = 3")
        conn.execute("UPDATE records SET seq = 3 WHERE seq = 4")
        conn.execute("UPDATE records SET seq = 4 WHERE seq = -1")
    report = verify_store(store)
    assert report.problems[0].seq == 3
    assert not report.ok


def test_verify_names_an_inserted_record(store: LineageStore) -> None:
    _fill(store)
    with _raw(store) as conn:
        row = conn.execute("SELECT * FROM records WHERE seq = 12").fetchone()
        conn.execute("UPDATE records SET seq = -(seq + 1) WHERE seq >= 7")  # make room
        conn.execute("UPDATE records SET seq = -seq WHERE seq < 0")
        forged = (7, *row[1:8], "f" * 64)
        conn.execute("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?)", forged)
    report = verify_store(store)
    assert report.problems[0].seq == 7


def test_verify_names_a_missing_artifact_file(store: LineageStore) -> None:
    shas = _fill(store, 3)
    store.artifacts.path(shas[1]).unlink()
    report = verify_store(store)
    assert report.problems[0].artifact == shas[1]
    assert "file is missing" in report.summary()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_single_changed_artifact_byte_fails_verify(tmp_path: Path, data: st.DataObject) -> None:
    store = LineageStore(tempfile.mkdtemp(dir=tmp_path))
    content = data.draw(st.binary(min_size=1, max_size=300))
    sha = store.put_artifact(content, name="a", media_type="x")
    index = data.draw(st.integers(0, len(content) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = bytearray(content)
    changed[index] ^= flip
    path = store.artifacts.path(sha)
    path.chmod(0o644)
    path.write_bytes(bytes(changed))
    report = verify_store(store)
    assert not report.ok
    assert report.problems[0].artifact == sha
    store.close()


def test_artifact_prefixes_resolve_or_say_why_not(store: LineageStore) -> None:
    sha = store.put_artifact(b"x", name="x", media_type="x")
    assert store.resolve_artifact(sha[:8]) == sha
    with pytest.raises(RecordNotFoundError, match="too short"):
        store.resolve_artifact(sha[:3])
    with pytest.raises(RecordNotFoundError, match="no artifact"):
        store.resolve_artifact("ffffff" if not sha.startswith("ffffff") else "000000")


def test_a_store_that_cannot_be_created_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot create"):
        LineageStore(blocker / "store")


def test_writing_bytes_again_repairs_a_damaged_blob(store: LineageStore) -> None:
    sha = store.put_artifact(b"original", name="o", media_type="x")
    path = store.artifacts.path(sha)
    path.chmod(0o644)
    path.write_bytes(b"damaged!")
    assert not verify_store(store).ok
    store.put_artifact(b"original", name="o", media_type="x")
    assert store.read_artifact(sha) == b"original"
    assert verify_store(store).ok
