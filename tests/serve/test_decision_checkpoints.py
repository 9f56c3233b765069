"""The decision log's signed checkpoints and witnesses, on SQLite and PostgreSQL.

The attacker writes the database with the append-only triggers off and rewrites the checkpoint
file; the log alone used to find rows cut off the end only against a head saved elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mlwarden.cli import main
from mlwarden.models import Signer
from mlwarden.serve._decisions import DecisionLog
from tests.lineage.test_checkpoints import KeySigner, Trust
from tests.serve.test_decisions import _record

PG_URL = os.environ.get("MLWARDEN_TEST_POSTGRES_URL")
_TABLES = ("decisions", "decision_feedback", "decision_checkpoints")


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The log's database (a SQLite file or a fresh PostgreSQL database) and its file."""
    checkpoint_file = tmp_path / "serve.CHECKPOINT"
    if request.param == "sqlite":
        yield str(tmp_path / "serve.db"), Path(f"{tmp_path / 'serve.db'}.CHECKPOINT")
        return
    if PG_URL is None:
        pytest.skip("MLWARDEN_TEST_POSTGRES_URL is not set")
    from sqlalchemy.engine import make_url

    name = f"mlwarden_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False), checkpoint_file
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


def _open(where: tuple[str, Path], signer: KeySigner | None = None, **kw: object) -> DecisionLog:
    url, checkpoint_file = where
    return DecisionLog(url, signer=signer, checkpoint_file=checkpoint_file, **kw)  # type: ignore[arg-type]


def _fill(log: DecisionLog, n: int, start: int = 0) -> list[str]:
    records = [_record(start + i) for i in range(n)]
    for record in records:
        assert log.append(record)
    log.flush()
    return [r.request_id for r in records]


def _as_attacker(url: str, statement: str) -> None:
    """Run ``statement`` with the log's append-only triggers off."""
    sqlite = "://" not in url
    engine = create_engine(f"sqlite:///{url}" if sqlite else url)
    with engine.begin() as conn:
        for table in _TABLES:
            if sqlite:
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_delete")
            else:
                conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")
        conn.exec_driver_sql(statement)
    engine.dispose()


def test_a_clean_close_signs_both_chains(where: tuple[str, Path]) -> None:
    key = KeySigner()
    log = _open(where, key)
    ids = _fill(log, 5)
    log.feedback(ids[0], ["ok"], "analyst")
    log.close()
    reopened = _open(where)
    newest = reopened.newest_checkpoints()
    assert [(c.chain, c.seq) for c in newest] == [("decisions", 5), ("decision_feedback", 1)]
    assert json.loads(where[1].read_bytes())["checkpoints"] == [c.to_json() for c in newest]
    report = reopened.verify(trust=Trust(key))
    assert report.ok and report.checkpointed == 2, report.summary()
    assert report.summary() == "ok: 5 decisions, 1 feedback"
    assert "signatures not checked" in reopened.verify().summary()
    reopened.close()


def test_checkpoints_every_n_batches_and_not_again_when_nothing_moved(
    where: tuple[str, Path],
) -> None:
    key = KeySigner()
    log = _open(where, key, checkpoint_every=2)
    for i in range(4):
        _fill(log, 1, start=i)  # one flushed record: one batch
    assert log.batches == 4
    assert [(c.chain, c.seq) for c in log.newest_checkpoints()] == [("decisions", 4)]
    assert log.checkpoint() == []  # the heads did not move
    log.close()
    reopened = _open(where)
    assert reopened.verify(trust=Trust(key)).checkpointed == 2  # batches 2 and 4; none on close
    reopened.close()


def test_rows_cut_off_the_end_are_caught_without_a_saved_head(where: tuple[str, Path]) -> None:
    key = KeySigner()
    log = _open(where, key)
    _fill(log, 6)
    log.close()
    _as_attacker(where[0], "DELETE FROM decisions WHERE seq > 3")
    reopened = _open(where)
    report = reopened.verify(trust=Trust(key))
    assert not report.ok
    assert "names decisions 6, but the chain ends at 3: records were cut off" in report.summary()
    reopened.close()


def test_a_rollback_to_an_older_checkpoint_is_caught_only_by_a_witness(
    where: tuple[str, Path], tmp_path: Path
) -> None:
    key = KeySigner()
    log = _open(where, key)
    _fill(log, 3)
    log.close()
    older = where[1].read_bytes()
    log = _open(where, key)
    _fill(log, 3, start=3)
    log.close()
    witness = tmp_path / "witness.json"
    shutil.copyfile(where[1], witness)
    _as_attacker(where[0], "DELETE FROM decisions WHERE seq > 3")
    _as_attacker(where[0], "DELETE FROM decision_checkpoints WHERE seq > 1")
    where[1].write_bytes(older)
    reopened = _open(where)
    assert reopened.verify(trust=Trust(key)).ok
    report = reopened.verify(trust=Trust(key), witnesses=[witness])
    assert [p.message for p in report.problems] == [
        f"witness {witness} names decisions 6, but the chain ends at 3: "
        "records were cut off the end"
    ]
    reopened.close()


def test_an_untrusted_signer_is_a_signature_problem(where: tuple[str, Path]) -> None:
    log = _open(where, KeySigner())
    _fill(log, 2)
    log.close()
    reopened = _open(where)
    report = reopened.verify(trust=Trust(KeySigner()))
    assert report.signature_failed and "is not trusted" in report.summary()
    reopened.close()


def test_a_row_with_invalid_utf8_is_reported_not_raised(tmp_path: Path) -> None:
    db = tmp_path / "serve.db"
    log = DecisionLog(db)
    _fill(log, 3)
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER decisions_no_update")
    conn.execute("UPDATE decisions SET body = CAST(X'7BFF7D' AS TEXT) WHERE seq = 2")
    conn.commit()
    conn.close()
    report = log.verify()
    assert report.problems[0].seq == 2
    assert report.problems[0].message.startswith("decision 2 is unreadable: body is not valid UTF")
    log.close()


# -- the CLI -------------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """A store whose decision log was written by a server holding this machine's key."""
    store = tmp_path / "store"
    log = DecisionLog(store / "serve.db", signer=Signer.load_or_create())
    _fill(log, 4)
    log.close()
    return store


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_decisions_verify_and_export_a_witness(
    served: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    witness = tmp_path / "w.json"
    code, out, _ = _cli(
        capsys, "decisions", "checkpoint", "--store", str(served), "--export", str(witness)
    )
    assert code == 0 and "decisions 4" in out
    code, out, _ = _cli(
        capsys, "decisions", "verify", "--store", str(served), "--witness", str(witness)
    )
    assert code == 0
    assert out.splitlines() == ["ok: 4 decisions, 0 feedback", "consistent with 1 witness(es)"]
    _as_attacker(str(served / "serve.db"), "DELETE FROM decisions WHERE seq > 2")
    _as_attacker(str(served / "serve.db"), "DELETE FROM decision_checkpoints")
    Path(f"{served / 'serve.db'}.CHECKPOINT").unlink()
    code, _, err = _cli(
        capsys, "decisions", "verify", "--store", str(served), "--witness", str(witness)
    )
    assert code == 4 and err.startswith(f"FAILED: witness {witness} names decisions 4")


def test_decisions_verify_exits_5_for_a_forged_checkpoint(
    served: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forger = DecisionLog(served / "serve.db", signer=KeySigner())
    _fill(forger, 1, start=10)
    forger.close()
    code, _, err = _cli(capsys, "decisions", "verify", "--store", str(served))
    assert code == 5 and "is not pinned in the trust policy" in err


def test_a_corrupted_checkpoint_file_is_one_line_exit_4(
    served: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Path(f"{served / 'serve.db'}.CHECKPOINT").write_bytes(b"\x00\xff not json")
    code, _, err = _cli(capsys, "decisions", "verify", "--store", str(served))
    assert code == 4 and len(err.splitlines()) == 1 and "is not valid JSON" in err


def test_an_unsigned_log_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    log = DecisionLog(store / "serve.db")
    _fill(log, 2)
    log.close()
    assert not Path(f"{store / 'serve.db'}.CHECKPOINT").exists()
    code, out, _ = _cli(capsys, "decisions", "verify", "--store", str(store))
    assert code == 0
    assert out.splitlines()[0] == "ok: 2 decisions, 0 feedback"
    assert out.splitlines()[1].startswith("unsigned: the log holds no signed checkpoint")


def test_a_server_given_a_signer_checkpoints_its_log_on_close(
    store_root: Path, tmp_path: Path
) -> None:
    from mlwarden.lineage import LineageStore
    from mlwarden.serve import Deployment, build_server, close_server

    key = KeySigner()
    store = LineageStore(store_root)
    g = build_server(store, Deployment.single("phish@1"), serve_db=tmp_path / "s.db", signer=key)
    g.decisions.append(_record(1))
    close_server(g)
    store.close()
    log = DecisionLog(tmp_path / "s.db")
    assert [(c.chain, c.seq) for c in log.newest_checkpoints()] == [("decisions", 1)]
    assert log.verify(trust=Trust(key)).ok
    log.close()


def test_a_corrupted_index_fails_the_integrity_check_of_the_log(tmp_path: Path) -> None:
    """The log's verify runs PRAGMA integrity_check too: a damaged index hashes fine."""
    db = tmp_path / "serve.db"
    log = DecisionLog(db)
    _fill(log, 40)
    log.close()
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (page,) = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'ix_decisions_client'"
    ).fetchone()
    (size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    with db.open("r+b") as fh:
        fh.seek((page - 1) * size + size - 20)
        byte = fh.read(1)[0]
        fh.seek(-1, 1)
        fh.write(bytes([byte ^ 0x01]))
    reopened = DecisionLog(db)
    report = reopened.verify()
    assert report.database_check == "database integrity check FAILED"
    assert "fails PRAGMA integrity_check" in report.summary()
    reopened.close()
