"""Every corruption of a real store is a clean refusal: one line, exit 4 or 5, no traceback.

One store is made by running the fast German pipeline; each test corrupts its own copy the
way an attacker with write access would (sqlite3 with the triggers dropped, byte edits).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from mlwarden.cli import main
from mlwarden.errors import IntegrityError, SignatureError
from mlwarden.lineage import LineageStore, verify_store
from mlwarden.models import ModelRegistry, Signer
from mlwarden.pipeline import LocalExecutor, PipelineSpec


@pytest.fixture(scope="module")
def german_store(tmp_path_factory: pytest.TempPathFactory, fast_spec: PipelineSpec) -> Path:
    """A store holding one run of the fast German pipeline (german@1)."""
    root = tmp_path_factory.mktemp("german") / "store"
    store = LineageStore(root)
    assert LocalExecutor(store).run(fast_spec).model_version == "german@1"
    store.close()
    return root


@pytest.fixture(scope="module")
def fast_spec() -> PipelineSpec:
    from mlwarden.pipeline import parse_spec
    from tests.conftest import FAST_SPEC

    return parse_spec(FAST_SPEC)


@pytest.fixture
def copy(german_store: Path, tmp_path: Path) -> Path:
    """A private copy of the German store, for one test to corrupt."""
    return Path(shutil.copytree(german_store, tmp_path / "store"))


def _sql(root: Path, statement: str, *args: object) -> None:
    """Run ``statement`` on the store's database with the append-only triggers dropped."""
    conn = sqlite3.connect(root / "lineage.db")
    conn.execute("DROP TRIGGER records_no_update")
    conn.execute("DROP TRIGGER records_no_delete")
    conn.execute(statement, args)
    conn.commit()
    conn.close()


def _column(root: Path, column: str, seq: int) -> str:
    conn = sqlite3.connect(root / "lineage.db")
    (value,) = conn.execute(f"SELECT {column} FROM records WHERE seq = ?", (seq,)).fetchone()
    conn.close()
    return str(value)


def _model_record(root: Path) -> int:
    """The seq of the record that introduced german@1's model file."""
    store = LineageStore(root)
    sha = ModelRegistry(store).get("german@1").manifest.model_sha256
    record = store.artifact_record(sha)
    assert record is not None
    store.close()
    return record.seq


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run the CLI in-process; anything but an mlwarden error would raise out of here."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.err


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_the_untouched_store_verifies_with_the_integrity_check(german_store: Path) -> None:
    report = verify_store(LineageStore(german_store))
    assert report.ok, report.summary()
    assert report.database_check == "database integrity check ok"


def test_invalid_utf8_in_a_payload_is_reported_by_verify_not_raised(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = _column(copy, "payload", 3).encode()
    _sql(copy, "UPDATE records SET payload = CAST(? AS TEXT) WHERE seq = 3", payload[:5] + b"\xff")
    report = verify_store(LineageStore(copy))
    assert report.problems[0].seq == 3
    assert "payload is not valid UTF-8" in report.problems[0].message
    code, err = _cli(capsys, "lineage", "verify", "--store", str(copy))
    assert code == 4
    assert _one_line(err).startswith("FAILED: record 3 is unreadable: payload is not valid UTF-8")


def test_reading_a_row_with_invalid_utf8_is_an_integrity_error(copy: Path) -> None:
    _sql(copy, "UPDATE records SET subject = CAST(? AS TEXT) WHERE seq = 1", b"\xc3(")
    with pytest.raises(IntegrityError, match="not valid UTF-8"):
        LineageStore(copy).records()


def test_a_payload_that_is_not_json_is_reported_and_refused(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seq = _model_record(copy)
    _sql(copy, "UPDATE records SET payload = substr(payload, 2) WHERE seq = ?", seq)
    report = verify_store(LineageStore(copy))
    assert f"record {seq} is unreadable: payload is not valid JSON" in report.summary()
    with pytest.raises(IntegrityError, match=f"record {seq}: payload is not valid JSON"):
        LineageStore(copy).records("artifact")
    code, err = _cli(capsys, "lineage", "trace", "german@latest", "--store", str(copy))
    assert code == 4
    assert "payload is not valid JSON" in _one_line(err)


@pytest.mark.parametrize(
    ("column", "edit"),
    [
        ("created_at", lambda v: v.replace("T", " ")),  # same instant, another separator
        ("created_at", lambda v: v.replace("+00:00", "Z")),  # same instant, another zone form
        ("payload", lambda v: v.replace(":", ": ", 1)),  # same JSON value, a space added
        ("payload", lambda v: v.replace("{", "{ ", 1)),
    ],
)
def test_a_field_in_another_spelling_of_the_same_value_fails_verify(
    copy: Path, column: str, edit: object
) -> None:
    assert callable(edit)
    stored = _column(copy, column, 5)
    changed = edit(stored)
    assert changed != stored
    _sql(copy, f"UPDATE records SET {column} = ? WHERE seq = 5", changed)
    report = verify_store(LineageStore(copy))
    assert not report.ok
    assert report.problems[0].seq == 5
    assert f"not in canonical form: stored {column} differs" in report.problems[0].message


def _flip_index_byte(root: Path) -> None:
    """Change one byte near the end of an index's root page: the table itself is intact."""
    db = root / "lineage.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (page,) = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'ix_records_kind_subject'"
    ).fetchone()
    (size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    with db.open("r+b") as fh:
        fh.seek((page - 1) * size + size - 20)
        byte = fh.read(1)[0]
        fh.seek(-1, 1)
        fh.write(bytes([byte ^ 0x01]))


def test_a_corrupted_index_fails_the_sqlite_integrity_check(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _flip_index_byte(copy)
    report = verify_store(LineageStore(copy))
    assert report.database_check == "database integrity check FAILED"
    assert "fails PRAGMA integrity_check" in report.summary()
    code, err = _cli(capsys, "lineage", "verify", "--store", str(copy))
    assert code == 4
    assert "missing from index ix_records_kind_subject" in _one_line(err)


@pytest.mark.parametrize("content", [b"garbage", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"])
def test_a_corrupted_private_key_is_a_signature_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "signing.key").write_bytes(content)
    with pytest.raises(SignatureError, match=r"signing\.key is not a readable PEM ed25519 private"):
        Signer.load_or_create(tmp_path)


def test_a_corrupted_public_key_in_the_store_changes_nothing(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The store's public keys are a copy for people to read: verification never uses them.
    for pub in (copy / "keys").glob("*.pub"):
        pub.write_bytes(pub.read_bytes()[:40])
    code, _ = _cli(capsys, "models", "show", "german@1", "--store", str(copy))
    assert code == 0


def test_a_corrupted_trust_policy_exits_5_in_one_line(
    copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trust = tmp_path / "trust.json"
    trust.write_text('{"format": 1, "pinned": [{"public_key": "zz"}]}')
    for command in (["models", "show", "german@1"], ["models", "list"]):
        code, err = _cli(capsys, *command, "--store", str(copy), "--trust", str(trust))
        assert code == 5
        assert f"trust policy {trust} is corrupt (pinned.0" in _one_line(err)
    from mlwarden.lineage import TrustPolicy
    from mlwarden.serve import Deployment, build_server

    with pytest.raises(SignatureError, match=r"trust\.json is corrupt"):
        build_server(
            LineageStore(copy),
            Deployment.single("german@1"),
            serve_db=copy / "s.db",
            trust=TrustPolicy.load(trust),
        )


def _execution(
    store: LineageStore, step: str, inputs: list[str], outputs: list[str], *, exec_id: str
) -> None:
    """Record a completed execution of ``step`` reading ``inputs`` and writing ``outputs``."""
    start = {
        "step": step,
        "run_id": "run",
        "params": {},
        "code_version": "c" * 64,
        "cache_key": exec_id,
        "host": "h",
    }
    with store.transaction() as tx:
        tx.append("execution_started", exec_id, start, key=exec_id)
        for sha in inputs:
            tx.append("event", exec_id, {"direction": "input", "role": "in"}, key=sha)
    with store.transaction() as tx:
        for sha in outputs:
            tx.append("event", exec_id, {"direction": "output", "role": "out"}, key=sha)
        tx.append("execution_ended", exec_id, {"status": "completed"})


def test_trace_of_a_step_that_outputs_its_own_input_ends_at_the_source(
    store: LineageStore,
) -> None:
    from mlwarden.lineage import producer, upstream

    schema = store.put_artifact(b"schema", name="schema.json", media_type="x")
    table = store.put_artifact(b"table", name="raw.csv", media_type="x")
    _execution(store, "ingest", [schema], [table, schema], exec_id="e1")
    node = upstream(store, schema)
    assert node.produced_by is not None and node.produced_by.step == "ingest"
    assert [(n.artifact.sha256, n.produced_by) for n in node.inputs] == [(schema, None)]
    assert producer(store, schema) is not None
    assert verify_store(store).ok


def test_a_cycle_in_the_records_is_an_integrity_error_not_a_recursion(
    store: LineageStore, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlwarden.lineage import upstream

    a = store.put_artifact(b"a", name="a", media_type="x")
    b = store.put_artifact(b"b", name="b", media_type="x")
    # Only a forged chain can say so: e1 wrote a before reading b, and e2 wrote b from a.
    with store.transaction() as tx:
        for exec_id, wrote in (("e1", a), ("e2", b)):
            start = {
                "step": exec_id,
                "run_id": "run",
                "params": {},
                "code_version": "c",
                "cache_key": exec_id,
                "host": "h",
            }
            tx.append("execution_started", exec_id, start, key=exec_id)
            tx.append("event", exec_id, {"direction": "output", "role": "o"}, key=wrote)
    with store.transaction() as tx:
        for exec_id, read in (("e1", b), ("e2", a)):
            tx.append("event", exec_id, {"direction": "input", "role": "i"}, key=read)
            tx.append("execution_ended", exec_id, {"status": "completed"})
    with pytest.raises(IntegrityError, match="lineage cycle"):
        upstream(store, a)
    code, err = _cli(capsys, "lineage", "trace", a[:12], "--store", str(store.root))
    assert code == 4
    assert "lineage cycle" in _one_line(err)


def test_a_record_missing_a_field_a_reader_needs_is_an_integrity_error(copy: Path) -> None:
    from mlwarden.lineage import upstream

    seq = _model_record(copy)
    _sql(copy, "UPDATE records SET payload = '{}' WHERE seq = ?", seq)
    store = LineageStore(copy)
    sha = store.resolve_artifact(_column(copy, "subject", seq))
    with pytest.raises(IntegrityError, match=rf"record {seq} \(artifact\) has no 'name'"):
        upstream(store, sha)


def test_an_artifact_record_naming_a_path_is_reported_and_never_opened(copy: Path) -> None:
    seq = _model_record(copy)
    _sql(copy, "UPDATE records SET subject = '../../../../etc/hostname' WHERE seq = ?", seq)
    report = verify_store(LineageStore(copy))
    messages = [p.message for p in report.problems if p.seq == seq]
    assert f"artifact record {seq} names '../../../../etc/hostname', not a sha256" in messages


def test_a_row_whose_seq_is_not_a_number_is_reported_not_raised(store: LineageStore) -> None:
    store.append("run_started", "r", {})
    conn = sqlite3.connect(store.root / "lineage.db")
    # A table without a rowid alias, as a damaged record header can make one column read as text.
    conn.execute("ALTER TABLE records RENAME TO old_records")
    conn.execute("CREATE TABLE records AS SELECT * FROM old_records")
    conn.execute(
        "INSERT INTO records SELECT 'x', format, kind, subject, key, payload, created_at, "
        "prev_hash, hash || 'x' FROM old_records"
    )
    conn.commit()
    conn.close()
    report = verify_store(store)
    assert "a row after record 1 has seq 'x', not a number" in [p.message for p in report.problems]


def test_a_damaged_file_header_is_one_line_exit_4(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = sqlite3.connect(copy / "lineage.db")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray((copy / "lineage.db").read_bytes())
    data[3] ^= 0x01  # inside "SQLite format 3"
    (copy / "lineage.db").write_bytes(bytes(data))
    code, err = _cli(capsys, "lineage", "verify", "--store", str(copy))
    assert code == 4
    assert _one_line(err).endswith("lineage.db: file is not a database")
