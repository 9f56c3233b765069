"""API keys: shown once, stored only as a keyed hash, roles honoured, revocation immediate."""

from __future__ import annotations

import hmac
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlwarden.errors import RecordNotFoundError, StoreError
from mlwarden.serve import _keys
from mlwarden.serve._keys import (
    ROLES,
    KeyNotFoundError,
    KeySpecError,
    KeyStore,
    Principal,
    parse_key_id,
)


class FakeMonotonic:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store" / "serve.db"


@pytest.fixture
def keys(db: Path) -> Iterator[KeyStore]:
    store = KeyStore(db)
    yield store
    store.close()


def _db_bytes(db: Path) -> bytes:
    """Every byte SQLite keeps for this database: the file, its WAL and shared memory."""
    return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))


def test_a_key_is_shown_once_and_its_secret_is_nowhere_in_the_database(db: Path) -> None:
    store = KeyStore(db)
    key = store.create("predict", "fraud-app")
    assert key.startswith("mlw_")
    key_id, secret = parse_key_id(key), key.split("_", 2)[2]
    assert key_id is not None and len(secret) == 43
    infos = store.list()
    assert [i.key_id for i in infos] == [key_id]
    assert "secret" not in infos[0].model_dump() and "digest" not in infos[0].model_dump()
    assert secret not in repr(infos)
    data_while_open = _db_bytes(db)
    store.close()
    for data in (data_while_open, _db_bytes(db)):
        assert secret.encode() not in data
        assert key.encode() not in data
        assert key_id.encode() in data  # the id is stored: it names the key


def test_each_key_is_distinct_and_authenticates_to_its_principal(keys: KeyStore) -> None:
    made = {role: keys.create(role, f"{role} user") for role in ROLES}
    assert len(set(made.values())) == len(ROLES) == 4
    for role, key in made.items():
        principal = keys.authenticate(key)
        assert isinstance(principal, Principal)
        assert principal.role == role
        assert principal.name == f"{role} user"
        assert principal.key_id == parse_key_id(key)
        assert principal.created_at.tzinfo is not None


def test_admin_implies_every_role_and_others_only_their_own(keys: KeyStore) -> None:
    def allowed(role: _keys.Role) -> set[str]:
        principal = keys.authenticate(keys.create(role, "x"))
        assert principal is not None
        return {r for r in ROLES if principal.allows(r)}

    assert allowed("admin") == {"predict", "feedback", "explain", "admin"}
    assert allowed("predict") == {"predict"}
    assert allowed("feedback") == {"feedback"}
    assert allowed("explain") == {"explain"}


def test_a_revoked_key_is_rejected_at_once_and_stays_on_record(keys: KeyStore) -> None:
    key = keys.create("predict", "app")
    key_id = parse_key_id(key)
    assert key_id is not None
    assert keys.authenticate(key) is not None  # now cached
    info = keys.revoke(key_id)
    assert info.revoked_at is not None and not info.active
    assert keys.authenticate(key) is None
    assert keys.revoke(key_id).revoked_at == info.revoked_at  # idempotent
    assert [(i.key_id, i.active) for i in keys.list()] == [(key_id, False)]
    assert keys.list(include_revoked=False) == []


def test_revoking_an_unknown_key_names_it(keys: KeyStore) -> None:
    with pytest.raises(KeyNotFoundError, match="0123456789abcdef") as info:
        keys.revoke("0123456789abcdef")
    assert isinstance(info.value, RecordNotFoundError) and isinstance(info.value, LookupError)


def test_a_revocation_by_another_process_is_seen_within_the_cache_ttl(db: Path) -> None:
    clock = FakeMonotonic()
    server = KeyStore(db, cache_ttl_s=5.0, monotonic=clock)
    cli = KeyStore(db)
    key = server.create("predict", "app")
    assert server.authenticate(key) is not None
    key_id = parse_key_id(key)
    assert key_id is not None
    cli.revoke(key_id)
    clock.now = 4.9
    assert server.authenticate(key) is not None  # still trusted from memory
    clock.now = 5.0
    assert server.authenticate(key) is None
    server.close()
    cli.close()


class _Feed:
    """A revocation feed that never reports a change (the replicas' case, without Redis)."""

    def announce(self, key_id: str) -> None:
        pass

    def changed(self) -> bool:
        return False


def test_the_memory_only_check_answers_exactly_what_authenticate_would(db: Path) -> None:
    # The server checks keys on its event loop from memory; anything needing I/O defers.
    clock = FakeMonotonic()
    server = KeyStore(db, cache_ttl_s=5.0, monotonic=clock)
    cli = KeyStore(db)
    key = server.create("predict", "app")
    prefix, key_id, secret = key.split("_", 2)
    flipped = ("B" if secret[0] == "A" else "A") + secret[1:]
    assert server.cached(key) == (False, None)  # never verified: ask the database
    principal = server.authenticate(key)
    assert principal is not None
    assert server.cached(key) == (True, principal)
    assert server.cached(f"{prefix}_{key_id}_{flipped}") == (True, None)  # wrong secret
    assert server.cached("not a key") == (True, None)
    cli.revoke(key_id)  # by another process: trusted from memory until the ttl ends, as before
    clock.now = 4.9
    assert server.cached(key) == (True, principal)
    clock.now = 5.0
    assert server.cached(key) == (False, None)
    assert server.authenticate(key) is None
    other = server.create("predict", "other")
    assert server.authenticate(other) is not None
    server.revoke(parse_key_id(other) or "")  # through this store: at once
    assert server.cached(other) == (False, None)
    replica = KeyStore(db, revocations=_Feed())
    live = replica.create("predict", "replica")
    assert replica.authenticate(live) is not None
    assert replica.cached(live) == (False, None)  # the feed must be polled: not from memory
    for store in (server, cli, replica):
        store.close()


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "mlw_",
        "not a key",
        "Bearer mlw_0123456789abcdef_" + "A" * 43,
        "mlw_0123456789ABCDEF_" + "A" * 43,  # id must be lower-case hex
        "mlw_0123456789abcdef_" + "A" * 42,
        "mlw_0123456789abcdef_" + "A" * 44,
        "mlw_0123456789abcdef_" + "A" * 42 + "!",
        "mlw_0123456789abcdef_" + "A" * 43 + "\n",
        "x" * 10_000,
    ],
)
def test_malformed_keys_are_rejected_without_raising(keys: KeyStore, bad: str) -> None:
    keys.create("admin", "root")
    assert keys.authenticate(bad) is None


def test_non_string_keys_are_rejected_without_raising(keys: KeyStore) -> None:
    for bad in (None, b"mlw_", 42):
        assert keys.authenticate(bad) is None  # type: ignore[arg-type]


def test_wrong_secret_or_unknown_id_is_rejected(keys: KeyStore) -> None:
    key = keys.create("admin", "root")
    prefix, key_id, secret = key.split("_", 2)
    flipped = ("B" if secret[0] == "A" else "A") + secret[1:]
    assert keys.authenticate(f"{prefix}_{key_id}_{flipped}") is None
    assert keys.authenticate(key) is not None  # cached now: a wrong secret is still wrong
    assert keys.authenticate(f"{prefix}_{key_id}_{flipped}") is None
    other_id = "f" * 16 if key_id != "f" * 16 else "e" * 16
    assert keys.authenticate(f"{prefix}_{other_id}_{secret}") is None


def test_a_key_from_another_pepper_does_not_authenticate(db: Path) -> None:
    peppered = KeyStore(db, pepper=b"s" * 32)
    key = peppered.create("predict", "app")
    plain = KeyStore(db)
    assert peppered.authenticate(key) is not None
    assert plain.authenticate(key) is None
    peppered.close()
    plain.close()


def test_digests_are_compared_in_constant_time(
    keys: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = keys.create("predict", "app")
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(_keys.hmac, "compare_digest", spy)
    assert keys.authenticate(key) is not None  # from the database
    assert keys.authenticate(key) is not None  # from the cache
    assert keys.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert len(calls) == 3
    assert all(len(a) == len(b) == 64 for a, b in calls)


def test_roles_and_names_are_checked(keys: KeyStore) -> None:
    with pytest.raises(KeySpecError, match="unknown role 'root'"):
        keys.create("root", "x")  # type: ignore[arg-type]
    for name in ("", "   ", "n" * 129):
        with pytest.raises(KeySpecError, match="name"):
            keys.create("predict", name)
    assert keys.list() == []


def test_the_database_refuses_deletion_and_any_change_but_revocation(
    keys: KeyStore, db: Path
) -> None:
    key_id = parse_key_id(keys.create("predict", "app"))
    conn = sqlite3.connect(db)
    for statement in (
        "DELETE FROM api_keys",
        "UPDATE api_keys SET role = 'admin'",
        "UPDATE api_keys SET digest = '00'",
    ):
        with pytest.raises(sqlite3.DatabaseError, match="api key"):
            conn.execute(statement)
    conn.execute("UPDATE api_keys SET revoked_at = '2030-01-01T00:00:00+00:00'")
    conn.commit()
    with pytest.raises(sqlite3.DatabaseError, match="only be revoked, once"):
        conn.execute("UPDATE api_keys SET revoked_at = NULL")
    conn.close()
    info = keys.info(key_id or "")
    assert info is not None and info.revoked_at == datetime(2030, 1, 1, tzinfo=UTC)


def test_an_unopenable_store_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open the key store"):
        KeyStore(blocker / "serve.db")
