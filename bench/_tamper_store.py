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
from collections.abc import Iterator
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


@contextmanager
def open_db(store: Path, *, drop_triggers: bool = True) -> Iterator[sqlite3.Connection]:
    """The store's SQLite file opened directly, triggers dropped, changes committed at exit."""
    conn = sqlite3.connect(store / "lineage.db", isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        if drop_triggers:
            names = conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'records'"
            ).fetchall()
            for (name,) in names:
                conn.execute(f'DROP TRIGGER "{name}"')
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


def rows(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every record row, by seq, as text."""
    conn.row_factory = sqlite3.Row
    try:
        found = conn.execute("SELECT * FROM records ORDER BY seq").fetchall()
    finally:
        conn.row_factory = None
    return [dict(r) for r in found]


def insert(conn: sqlite3.Connection, row: dict[str, Any]) -> None:
    """Insert one row as given."""
    names = list(row)
    marks = ", ".join("?" for _ in names)
    quoted = ", ".join(f'"{n}"' for n in names)
    conn.execute(f"INSERT INTO records ({quoted}) VALUES ({marks})", [row[n] for n in names])


def last(conn: sqlite3.Connection) -> tuple[int, str]:
    """Seq and hash of the newest record."""
    seq, digest = conn.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
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
