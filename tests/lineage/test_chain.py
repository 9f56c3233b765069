"""The one chain module: formats kept byte for byte, locked appends, a walk that never raises."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Column, MetaData, String

from mlwarden._sql import open_engine
from mlwarden.lineage import LineageStore, verify_store
from mlwarden.lineage._chain import GENESIS, ChainTable, ProblemList
from mlwarden.lineage._store import CHAIN
from mlwarden.serve._decision_chain import CHAINS, CHECKPOINT_CHAIN, chain_hash

_T = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def test_lineage_record_format_1_hashes_as_before(tmp_path: Path) -> None:
    """Hashes computed by the store before the chain module existed: old stores still verify."""
    store = LineageStore(tmp_path / "s", clock=lambda: _T)
    store.append("run_started", "r1", {"b": [1, 2.5, "é"], "a": None}, key="k")
    store.append("event", "e", {})
    assert [r.hash for r in store.records()] == [
        "87be55a4b9e86b5b3000f90a77457e1b72f20d1d0fa1a939e50924e27781bda3",
        "16e346102a1ff2abb60ac4cf3573334f384441f5c0171dccac0bd5e0dd527e7f",
    ]
    store.close()


def test_the_decision_log_envelope_hash_is_unchanged() -> None:
    assert chain_hash("decisions", 1, 3, b'{"a":1}', "ab" * 32) == (
        "f579711fb70f76f178812fdeaeab644db52cfe13c95cb1c9132add96f7fe4f92"
    )
    assert chain_hash("decision_feedback", 1, 1, b"{}", GENESIS) == (
        "0ac4284ff6b2445b732fc69586f8659f96c902a89c2206d2077b91f327390727"
    )


def test_every_chain_has_the_same_chain_columns_and_triggers(tmp_path: Path) -> None:
    for chain in (CHAIN, *CHAINS.values(), CHECKPOINT_CHAIN):
        names = [c.name for c in chain.table.c]
        assert names[:2] == ["seq", "format"] and names[-2:] == ["prev_hash", "hash"]
    LineageStore(tmp_path / "s").close()
    conn = sqlite3.connect(tmp_path / "s" / "lineage.db")
    triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    conn.close()
    assert triggers == {"records_no_update", "records_no_delete"}


def test_concurrent_appenders_never_chain_off_the_same_head(tmp_path: Path) -> None:
    """Two stores (two connections) on one file: BEGIN IMMEDIATE serialises their appends."""
    root = tmp_path / "s"
    stores = [LineageStore(root), LineageStore(root)]

    def write(store: LineageStore, tag: str) -> None:
        for i in range(25):
            with store.transaction() as tx:
                tx.append("event", f"{tag}{i}", {"i": i})
                tx.append("event", f"{tag}{i}b", {"i": i})

    threads = [
        threading.Thread(target=write, args=(s, t)) for s, t in zip(stores, "ab", strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = verify_store(stores[0])
    assert report.ok and report.records == 100, report.summary()
    for store in stores:
        store.close()


def _demo_chain() -> ChainTable:
    """A chain of one text column, hashing it with its link: what a new chain plugs in."""
    from mlwarden.lineage import sha256_json

    def hasher(row: object) -> tuple[str, str]:
        assert isinstance(row, dict)
        if row["format"] != 1:
            raise ValueError(f"unknown format {row['format']}")
        digest = sha256_json([row["seq"], row["note"], row["prev_hash"]])
        return digest, str(row["note"])

    return ChainTable(
        MetaData(),
        "notes",
        [Column("note", String(64), nullable=False)],
        hasher=hasher,
        label=lambda seq, row: f"note {seq}",
        noun="note",
        append_only="notes are append-only",
        pg_function="notes_forbid_change",
    )


def test_the_walk_reports_position_link_hash_format_and_bad_bytes(tmp_path: Path) -> None:
    from mlwarden.lineage import sha256_json

    chain = _demo_chain()
    url = f"sqlite:///{tmp_path / 'n.db'}"
    engine = open_engine(url, True, begin="manual")
    chain.table.metadata.create_all(engine)
    for note in ("a", "b", "c", "d", "e"):
        with chain.appending(engine, True) as (conn, seq, prev):
            digest = sha256_json([seq + 1, note, prev])
            row = {"seq": seq + 1, "format": 1, "note": note, "prev_hash": prev, "hash": digest}
            conn.execute(chain.table.insert().values(**row))
    problems = ProblemList()
    with engine.connect() as conn:
        walk = chain.walk(conn, True, problems)
    assert problems.items == [] and walk.count == 5 and walk.identity == walk.hash_at[1]

    raw = sqlite3.connect(tmp_path / "n.db")
    raw.execute("DROP TRIGGER notes_no_update")
    raw.execute("DROP TRIGGER notes_no_delete")
    raw.execute("UPDATE notes SET note = CAST(X'FF61' AS TEXT) WHERE seq = 2")
    raw.execute("UPDATE notes SET note = 'x' WHERE seq = 3")
    raw.execute("UPDATE notes SET format = 2 WHERE seq = 4")
    raw.execute("DELETE FROM notes WHERE seq = 5")
    raw.execute("INSERT INTO notes VALUES (7, 1, 'g', 'f', 'g')")
    raw.commit()
    raw.close()
    problems = ProblemList()
    with engine.connect() as conn:
        walk = chain.walk(conn, True, problems, table="notes")
    assert [(p.seq, p.message) for p in problems.sorted()] == [
        (2, "note 2 is unreadable: note is not valid UTF-8 (byte 0); "
            "the store was corrupted or tampered with"),
        (3, "note 3 was edited or moved: its content does not match its hash"),
        (4, "note 4 is unreadable: unknown format 2"),
        (5, "notes 5-6 missing before note 7: deleted"),
        (7, "note 7 does not link to the note before it: "
            "a note was deleted, inserted or reordered"),
        (7, "note 7 was edited or moved: its content does not match its hash"),
    ]  # fmt: skip
    assert {p.table for p in problems.items} == {"notes"} and walk.last_seq == 7
    engine.dispose()
