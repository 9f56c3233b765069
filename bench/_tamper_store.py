"""What an attacker with write access to an embedded store uses: raw SQLite, hashes, HEAD.

Nothing here goes through mlwarden's store code: the attacker opens ``lineage.db`` with the
``sqlite3`` module, drops the append-only triggers, and recomputes record hashes from the
documented record format (sha256 over the canonical JSON of the record's fields and its
predecessor's hash).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

TEXT_COLUMNS = ("kind", "subject", "key", "payload", "created_at", "prev_hash", "hash")


def canonical(value: Any) -> bytes:
    """The store's canonical JSON: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256(data: bytes) -> str:
    """Hex sha256."""
    return hashlib.sha256(data).hexdigest()


def record_hash(row: dict[str, Any]) -> str:
    """A record's hash recomputed from its (text) fields, as format 1 defines it."""
    return sha256(
        canonical(
            {
                "format": row["format"],
                "seq": row["seq"],
                "kind": row["kind"],
                "subject": row["subject"],
                "key": row["key"],
                "payload": json.loads(row["payload"]),
                "created_at": datetime.fromisoformat(row["created_at"]).isoformat(),
                "prev": row["prev_hash"],
            }
        )
    )


class Db:
    """One connection to the store's database, SQLite or PostgreSQL, in one transaction.

    SQL is written with ``?`` placeholders; PostgreSQL gets them as ``%s``.
    """

    def __init__(self, conn: Any, postgres: bool) -> None:
        self.conn = conn
        self.postgres = postgres

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; the rows it returns (none for a write)."""
        cur = self.conn.cursor()
        try:
            cur.execute(sql.replace("?", "%s") if self.postgres else sql, tuple(params))
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()

    def drop_triggers(self) -> None:
        """Drop the append-only triggers of ``records``: the attacker owns the database."""
        if self.postgres:
            names = self.execute(
                "SELECT tgname FROM pg_trigger "
                "WHERE tgrelid = 'records'::regclass AND NOT tgisinternal"
            )
            for (name,) in names:
                self.execute(f'DROP TRIGGER "{name}" ON records')
            return
        names = self.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'records'"
        )
        for (name,) in names:
            self.execute(f'DROP TRIGGER "{name}"')


def psycopg_conninfo(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as plain libpq connection info."""
    scheme, rest = url.split("://", 1)
    return f"postgresql://{rest}" if scheme.startswith("postgresql") else url


@contextmanager
def open_db(store: Path, url: str | None = None, *, drop_triggers: bool = True) -> Iterator[Db]:
    """The store's database opened directly (no mlwarden code), triggers dropped, committed."""
    if url is not None and not url.startswith("sqlite"):
        import psycopg

        pg = psycopg.connect(psycopg_conninfo(url))
        db = Db(pg, postgres=True)
        try:
            if drop_triggers:
                db.drop_triggers()
            yield db
            pg.commit()
        except BaseException:
            pg.rollback()
            raise
        finally:
            pg.close()
        return
    conn = sqlite3.connect(store / "lineage.db", isolation_level=None)
    db = Db(conn, postgres=False)
    try:
        conn.execute("BEGIN IMMEDIATE")
        if drop_triggers:
            db.drop_triggers()
        yield db
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


def rows(db: Db) -> list[dict[str, Any]]:
    """Every record row, by seq, as text."""
    cur = db.conn.cursor()
    try:
        cur.execute("SELECT * FROM records ORDER BY seq")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        cur.close()


def insert(db: Db, row: dict[str, Any]) -> None:
    """Insert one row as given."""
    names = list(row)
    marks = ", ".join("?" for _ in names)
    quoted = ", ".join(f'"{n}"' for n in names)
    db.execute(f"INSERT INTO records ({quoted}) VALUES ({marks})", [row[n] for n in names])


def last(db: Db) -> tuple[int, str]:
    """Seq and hash of the newest record."""
    seq, digest = db.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1")[0]
    return int(seq), str(digest)


def rewrite_head(store: Path, seq: int, digest: str) -> None:
    """Point HEAD at ``(seq, digest)``, keeping whatever else HEAD holds."""
    path = store / "HEAD"
    head: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_bytes())
            head = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            head = {}
    head.update({"seq": seq, "hash": digest})
    path.write_bytes(canonical(head))


def make_writable(path: Path) -> None:
    """Artifacts are written read-only; their owner (the attacker) may chmod them."""
    os.chmod(path, path.stat().st_mode | stat.S_IWUSR)


def flip_byte(path: Path, rng: random.Random, offset: int | None = None) -> int:
    """XOR one byte of ``path`` with a random non-zero value; return the offset changed."""
    make_writable(path)
    data = bytearray(path.read_bytes())
    at = rng.randrange(len(data)) if offset is None else offset
    data[at] ^= rng.randrange(1, 256)
    path.write_bytes(bytes(data))
    return at


def files_under(folder: Path) -> list[Path]:
    """Every regular file below ``folder``, sorted (so a seeded choice is reproducible)."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file())
