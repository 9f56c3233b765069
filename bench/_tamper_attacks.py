"""The attack classes of ``bench/tamper.py``: each changes a fresh copy of a real store.

Each is ``attack(store, rng, ctx) -> None``, run by an attacker who can write everything under
the store folder but not the user's key directory or a witness kept elsewhere. An attack that
needs something the store does not have (a ``CHECKPOINT`` file, a witness) is marked by
``needs`` and reported "n/a (feature missing)" by the runner.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _tamper_rewrite import find_private_key, rewrite_store
from _tamper_store import (
    TEXT_COLUMNS,
    files_under,
    flip_byte,
    insert,
    last,
    open_db,
    record_hash,
    rewrite_head,
    rows,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass
class Ctx:
    """What the attacks know besides the store copy: the model, the versions, the key dir."""

    name: str
    model_sha: str
    constant_models: tuple[bytes, bytes]
    key_dir: Path
    older_checkpoint: bytes | None = None
    older_checkpoint_seq: int | None = None
    db_url: str | None = None
    notes: list[str] = field(default_factory=list)


Attack = Callable[[Path, random.Random, Ctx], None]


@dataclass(frozen=True)
class AttackClass:
    """One row of the table: an attack, what it needs, and whether it changes content."""

    name: str
    attack: Attack
    needs: frozenset[str] = frozenset()
    witness_only: bool = False
    what: str = ""


def _random_hex(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(64))


def artifact_byte(store: Path, rng: random.Random, ctx: Ctx) -> None:
    """One byte of one artifact file."""
    path = rng.choice(files_under(store / "artifacts"))
    flip_byte(path, rng)


def record_file_byte(store: Path, rng: random.Random, ctx: Ctx) -> None:
    """One byte of one record, changed in the SQLite file itself (no SQL, triggers intact)."""
    path = store / "lineage.db"
    data = path.read_bytes()
    with open_db(store, drop_triggers=False) as db:
        found = rows(db)
    for _ in range(200):
        row = rng.choice(found)
        # The row's text columns lie back to back in its cell; payloads too long for one page
        # spill into overflow pages, so fall back to the columns after the payload.
        whole = "".join(row[c] or "" for c in TEXT_COLUMNS).encode()
        tail = "".join(row[c] for c in ("created_at", "prev_hash", "hash")).encode()
        for span in (whole, tail):
            at = data.find(span)
            if at >= 0 and data.find(span, at + 1) < 0:
                flip_byte(path, rng, at + rng.randrange(len(span)))
                return
    raise RuntimeError("no record's bytes could be found in the SQLite file")


def _edit_field(store: Path, rng: random.Random, ctx: Ctx, column: str) -> None:
    with open_db(store, ctx.db_url) as db:
        found = rows(db)
        row = rng.choice(found)
        value: str = row[column]
        if column == "payload":
            value = json.dumps(
                _mutate(json.loads(value), rng),
                sort_keys=True,
                separators=(",", ":"),
                ensure_ascii=False,
            )
        elif column == "created_at":
            # Another separator ISO 8601 allows: parses to the very same time.
            value = value.replace("T", rng.choice(" t"), 1)
        else:
            value = _random_hex(rng)
        db.execute(f"UPDATE records SET {column} = ? WHERE seq = ?", (value, row["seq"]))


def _mutate(value: Any, rng: random.Random) -> Any:
    """A copy of a JSON value with one leaf changed (a dict with no leaves gains a key)."""
    if isinstance(value, dict):
        if not value:
            return {"x": 1}
        k = rng.choice(sorted(value))
        return {**value, k: _mutate(value[k], rng)}
    if isinstance(value, list):
        if not value:
            return [0]
        i = rng.randrange(len(value))
        return [*value[:i], _mutate(value[i], rng), *value[i + 1 :]]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        if not value:
            return "x"
        i = rng.randrange(len(value))
        swap = "0" if value[i] != "0" else "1"
        return value[:i] + swap + value[i + 1 :]
    return 0


def sql_payload(store: Path, rng: random.Random, ctx: Ctx) -> None:
    """A record's payload edited by SQL (one JSON value changed, canonical form kept)."""
    _edit_field(store, rng, ctx, "payload")


def sql_created_at(store: Path, rng: random.Random, ctx: Ctx) -> None:
    """A record's created_at rewritten with another ISO separator (the same instant)."""
    _edit_field(store, rng, ctx, "created_at")


def sql_hash(store: Path, rng: random.Random, ctx: Ctx) -> None:
    """A record's hash replaced by SQL."""
    _edit_field(store, rng, ctx, "hash")


def sql_prev_hash(store: Path, rng: random.Random, ctx: Ctx) -> None:
    """A record's prev_hash replaced by SQL."""
    _edit_field(store, rng, ctx, "prev_hash")


def keys_byte(store: Path, rng: random.Random, ctx: Ctx) -> None:
    """One byte of one file under ``<store>/keys``."""
    path = rng.choice(files_under(store / "keys"))
    flip_byte(path, rng)
    ctx.notes.append(path.name)


def head_byte(store: Path, rng: random.Random, ctx: Ctx) -> None:
    """One byte of HEAD."""
    flip_byte(store / "HEAD", rng)


def checkpoint_byte(store: Path, rng: random.Random, ctx: Ctx) -> None:
    """One byte of the signed CHECKPOINT file."""
    flip_byte(store / "CHECKPOINT", rng)


def delete_record(store: Path, rng: random.Random, ctx: Ctx) -> None:
    """One record deleted from the middle of the chain."""
    with open_db(store, ctx.db_url) as db:
        newest, _ = last(db)
        db.execute("DELETE FROM records WHERE seq = ?", (rng.randrange(1, newest),))


def swap_records(store: Path, rng: random.Random, ctx: Ctx) -> None:
    """Two records exchange places (every column but seq)."""
    with open_db(store, ctx.db_url) as db:
        found = {r["seq"]: r for r in rows(db)}
        a, b = rng.sample(sorted(found), 2)
        columns = ["format", *TEXT_COLUMNS]
        sets = ", ".join(f'"{c}" = ?' for c in columns)
        db.execute("UPDATE records SET hash = 'moving' WHERE seq = ?", (a,))
        db.execute(f"UPDATE records SET {sets} WHERE seq = ?", [*_values(found[a]), b])
        db.execute(f"UPDATE records SET {sets} WHERE seq = ?", [*_values(found[b]), a])


def _values(row: dict[str, Any]) -> list[Any]:
    return [row[c] for c in ("format", *TEXT_COLUMNS)]


def _truncate(store: Path, rng: random.Random, ctx: Ctx) -> tuple[int, str]:
    with open_db(store, ctx.db_url) as db:
        newest, _ = last(db)
        cut = rng.randint(1, min(20, newest - 1))
        db.execute("DELETE FROM records WHERE seq > ?", (newest - cut,))
        return last(db)


def truncate_tail(store: Path, rng: random.Random, ctx: Ctx) -> None:
    """The newest 1-20 records deleted; HEAD left as it was."""
    _truncate(store, rng, ctx)


def truncate_rewrite_head(store: Path, rng: random.Random, ctx: Ctx) -> None:
    """The newest 1-20 records deleted and HEAD rewritten to name the new end."""
    seq, digest = _truncate(store, rng, ctx)
    rewrite_head(store, seq, digest)


def rollback_checkpoint(store: Path, rng: random.Random, ctx: Ctx) -> None:
    """Back to the first run's end: later records deleted, its genuine CHECKPOINT put back."""
    assert ctx.older_checkpoint is not None and ctx.older_checkpoint_seq is not None
    with open_db(store, ctx.db_url) as db:
        db.execute("DELETE FROM records WHERE seq > ?", (ctx.older_checkpoint_seq,))
        seq, digest = last(db)
    rewrite_head(store, seq, digest)
    (store / "CHECKPOINT").chmod(0o644)
    (store / "CHECKPOINT").write_bytes(ctx.older_checkpoint)


def replay_version(store: Path, rng: random.Random, ctx: Ctx) -> None:
    """A copy of an older signed model_version record appended, chained and hashed correctly."""
    with open_db(store, ctx.db_url) as db:
        found = [r for r in rows(db) if r["kind"] == "model_version"]
        old = rng.choice(found[:-1])
        seq, prev = last(db)
        copy = {**old, "seq": seq + 1, "prev_hash": prev}
        copy["created_at"] = datetime.now(UTC).isoformat()
        copy["hash"] = record_hash(copy)
        insert(db, copy)
    rewrite_head(store, copy["seq"], copy["hash"])


def rewrite_without_key(store: Path, rng: random.Random, ctx: Ctx) -> None:
    """Model swapped for a constant one; every record rebuilt, signed with the attacker's key."""
    rewrite_store(
        store,
        Ed25519PrivateKey.generate(),
        old_model_sha=ctx.model_sha,
        new_model=rng.choice(ctx.constant_models),
        replace_keys=True,
        url=ctx.db_url,
    )


def rewrite_with_key(store: Path, rng: random.Random, ctx: Ctx) -> None:
    """The same rewrite signed with the real private key (the attacker stole it)."""
    key = find_private_key([store / "keys", ctx.key_dir])
    if key is None:
        raise RuntimeError("no private key found in the store or the key dir")
    rewrite_store(
        store,
        key,
        old_model_sha=ctx.model_sha,
        new_model=rng.choice(ctx.constant_models),
        replace_keys=False,
        url=ctx.db_url,
    )


CLASSES: list[AttackClass] = [
    AttackClass("artifact byte", artifact_byte),
    AttackClass("record byte (file)", record_file_byte, frozenset({"sqlite"})),
    AttackClass("SQL payload", sql_payload),
    AttackClass("SQL created_at sep", sql_created_at),
    AttackClass("SQL hash", sql_hash),
    AttackClass("SQL prev_hash", sql_prev_hash),
    AttackClass("keys byte", keys_byte, frozenset({"keys in the store"})),
    AttackClass("HEAD byte", head_byte),
    AttackClass("CHECKPOINT byte", checkpoint_byte, frozenset({"checkpoint"})),
    AttackClass("delete record", delete_record),
    AttackClass("swap records", swap_records),
    AttackClass("truncate tail", truncate_tail),
    AttackClass("truncate + HEAD", truncate_rewrite_head),
    AttackClass(
        "rollback CHECKPOINT",
        rollback_checkpoint,
        frozenset({"checkpoint", "witness"}),
        witness_only=True,
    ),
    AttackClass("replay version", replay_version),
    AttackClass("rewrite, no key", rewrite_without_key),
    AttackClass("rewrite, real key", rewrite_with_key, frozenset({"witness"}), witness_only=True),
]
