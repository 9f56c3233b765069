"""API keys for the model server: created once, stored only as a keyed hash, revoked never deleted.

A key reads ``mlw_<key id>_<secret>``. The key id (16 hex characters) is not secret: it names
the key in logs, the decision log and ``list()``. The secret is ``secrets.token_urlsafe(32)``,
256 random bits, so the store keeps HMAC-SHA256 of the whole key under a pepper rather than a
salted slow hash: nobody can brute-force 256 bits, and bcrypt or scrypt would cost milliseconds
on every request. The pepper defaults to a public domain separator; pass a secret one kept
outside the database (an environment variable, a file) for defence in depth. Digests are
compared with :func:`hmac.compare_digest`.

Verified keys are cached in memory with their digest. A revocation through the same
``KeyStore`` takes effect at once; one made by another process (the CLI beside a running server)
takes effect within ``cache_ttl_s``, after which a cached key is checked against the database
again. Replicas sharing state in Redis pass a :class:`RevocationFeed`: a revocation through one
announces itself there, and the others drop their cached keys within a second.

Storage, table ``api_keys`` (SQLite by default, the same ``serve.db`` as the decision log)::

    key_id      primary key, 16 hex
    name        who or what the key is for
    role        predict | feedback | explain | admin
    scheme      how ``digest`` was made ("hmac-sha256/v1"), the stored format's version
    digest      hex HMAC-SHA256(pepper, key)
    created_at  ISO 8601, UTC
    revoked_at  ISO 8601, UTC, or NULL while the key is active

The database refuses DELETE, and any UPDATE other than setting ``revoked_at`` once (triggers),
so revocations stay on record.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TypeGuard, get_args

from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    DDL,
    Column,
    MetaData,
    String,
    Table,
    event,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from mlwarden._sql import create_tables, open_engine, sqlalchemy_url
from mlwarden.errors import MlwardenError, RecordNotFoundError, StoreError

__all__ = [
    "REVOCATION_DELAY_S",
    "ROLES",
    "KeyInfo",
    "KeyNotFoundError",
    "KeySpecError",
    "KeyStore",
    "Principal",
    "RevocationFeed",
    "Role",
    "parse_key_id",
]

Role = Literal["predict", "feedback", "explain", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)

SCHEME = "hmac-sha256/v1"
PREFIX = "mlw"
_DEFAULT_PEPPER = b"mlwarden api key v1"
_KEY_RE = re.compile(r"mlw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_MAX_KEY_LENGTH = 128
_MAX_NAME_LENGTH = 128
#: How long a verified key is trusted from memory by default: a revocation made by another
#: process (``mlwarden keys revoke`` beside a running server) takes effect within this time.
REVOCATION_DELAY_S = 5.0

_metadata = MetaData()
_keys = Table(
    "api_keys",
    _metadata,
    Column("key_id", String(16), primary_key=True),
    Column("name", String(_MAX_NAME_LENGTH), nullable=False),
    Column("role", String(16), nullable=False),
    Column("scheme", String(32), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("revoked_at", String(40), nullable=True),
)

_FORBID_DELETE = "api keys are revoked, never deleted"
_FORBID_UPDATE = "an api key can only be revoked, once"
_FIXED = ("key_id", "name", "role", "scheme", "digest", "created_at")
event.listen(
    _keys,
    "after_create",
    DDL(  # type: ignore[no-untyped-call]
        "CREATE TRIGGER api_keys_no_delete BEFORE DELETE ON api_keys "
        f"BEGIN SELECT RAISE(ABORT, '{_FORBID_DELETE}'); END"
    ).execute_if(dialect="sqlite"),
)
event.listen(
    _keys,
    "after_create",
    DDL(  # type: ignore[no-untyped-call]
        "CREATE TRIGGER api_keys_revoke_only BEFORE UPDATE ON api_keys WHEN "
        "OLD.revoked_at IS NOT NULL OR "
        + " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in _FIXED)
        + f" BEGIN SELECT RAISE(ABORT, '{_FORBID_UPDATE}'); END"
    ).execute_if(dialect="sqlite"),
)
event.listen(
    _keys,
    "after_create",
    DDL(  # type: ignore[no-untyped-call]
        "CREATE OR REPLACE FUNCTION mlwarden_api_keys_guard() RETURNS trigger AS $$ BEGIN "
        f"IF TG_OP <> 'UPDATE' THEN RAISE EXCEPTION '{_FORBID_DELETE}'; END IF; "
        "IF OLD.revoked_at IS NOT NULL OR "
        + " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in _FIXED)
        + f" THEN RAISE EXCEPTION '{_FORBID_UPDATE}'; END IF; "
        "RETURN NEW; END $$ LANGUAGE plpgsql; "
        "CREATE TRIGGER api_keys_guard BEFORE UPDATE OR DELETE ON api_keys "
        "FOR EACH ROW EXECUTE FUNCTION mlwarden_api_keys_guard(); "
        "CREATE TRIGGER api_keys_no_truncate BEFORE TRUNCATE ON api_keys "
        "FOR EACH STATEMENT EXECUTE FUNCTION mlwarden_api_keys_guard()"
    ).execute_if(dialect="postgresql"),
)


class KeySpecError(MlwardenError, ValueError):
    """A key was asked for with an unknown role or an unusable name."""


class KeyNotFoundError(RecordNotFoundError):
    """No API key has the given key id."""


class Principal(BaseModel):
    """Who an authenticated request comes from: the key's id, name and role (never its secret)."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    name: str
    role: Role
    created_at: datetime

    def allows(self, role: Role) -> bool:
        """Whether this key may act as ``role``; ``admin`` may do everything."""
        return self.role == "admin" or self.role == role


class KeyInfo(BaseModel):
    """What ``KeyStore.list`` shows of a key: everything but its secret and digest."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        """True until the key is revoked."""
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class _Verified:
    digest: str
    principal: Principal
    checked_at: float


class RevocationFeed(Protocol):
    """Revocations shared between replicas: announced by the one that revokes, polled by all."""

    def announce(self, key_id: str) -> None:
        """Tell the other replicas that ``key_id`` was revoked."""
        ...

    def changed(self) -> bool:
        """Whether a key may have been revoked elsewhere since the last call."""
        ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


def parse_key_id(key: str) -> str | None:
    """The key id of a well-formed key, or None for anything else (never raises)."""
    if not isinstance(key, str) or len(key) > _MAX_KEY_LENGTH:
        return None
    match = _KEY_RE.fullmatch(key)
    return match.group(1) if match else None


class KeyStore:
    """API keys with roles, kept as keyed hashes in a SQL database.

    Parameters
    ----------
    url_or_path:
        A SQLAlchemy URL, or a path to a SQLite file (created on first use), conventionally
        ``<store root>/serve.db``.
    pepper:
        HMAC key for the stored digests. Keys made under one pepper authenticate only under it.
    cache_ttl_s:
        How long a verified key is trusted from memory before the database is asked again;
        bounds how late a revocation made by another process is seen. 0 disables the cache.
    clock:
        Source of ``created_at`` and ``revoked_at``.
    monotonic:
        Seconds for the cache's age; tests inject a fake one.
    revocations:
        Revocations shared with other replicas; when it reports a change, every cached key is
        checked against the database again.
    """

    def __init__(
        self,
        url_or_path: str | Path,
        *,
        pepper: bytes | None = None,
        cache_ttl_s: float = REVOCATION_DELAY_S,
        clock: Callable[[], datetime] = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        revocations: RevocationFeed | None = None,
    ) -> None:
        if cache_ttl_s < 0:
            raise KeySpecError(f"cache_ttl_s must be >= 0, got {cache_ttl_s!r}")
        if pepper is not None and len(pepper) < 16:
            raise KeySpecError("a pepper must be at least 16 bytes")
        self._pepper = pepper if pepper is not None else _DEFAULT_PEPPER
        self._ttl = cache_ttl_s
        self._clock = clock
        self._monotonic = monotonic
        self._cache: dict[str, _Verified] = {}
        self._lock = threading.Lock()
        self._revocations = 0
        self._feed = revocations
        try:
            self.url, sqlite = sqlalchemy_url(url_or_path)
            self._engine = open_engine(self.url, sqlite)
            create_tables(_metadata, self._engine)
        except (OSError, SQLAlchemyError) as exc:
            raise StoreError(f"cannot open the key store {url_or_path}: {exc}") from exc

    def close(self) -> None:
        """Release database connections and forget cached keys."""
        with self._lock:
            self._cache.clear()
        self._engine.dispose()

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _digest(self, key: str) -> str:
        return hmac.new(self._pepper, key.encode("ascii"), hashlib.sha256).hexdigest()

    def create(self, role: Role, name: str) -> str:
        """Make a key for ``role`` and return it in plaintext: the only time it is ever shown.

        Raises
        ------
        KeySpecError
            If ``role`` is not one of ``ROLES`` or ``name`` is empty or too long.
        """
        if role not in ROLES:
            raise KeySpecError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        name = name.strip() if isinstance(name, str) else ""
        if not name or len(name) > _MAX_NAME_LENGTH:
            raise KeySpecError(f"a key needs a name of 1 to {_MAX_NAME_LENGTH} characters")
        key_id = secrets.token_hex(8)
        key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        row = {
            "key_id": key_id,
            "name": name,
            "role": role,
            "scheme": SCHEME,
            "digest": self._digest(key),
            "created_at": self._clock().isoformat(),
            "revoked_at": None,
        }
        try:
            with self._engine.begin() as conn:
                conn.execute(_keys.insert().values(row))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot store the new key: {exc}") from exc
        return key

    def authenticate(self, key: str) -> Principal | None:
        """The principal ``key`` belongs to, or None if it is malformed, unknown, wrong or revoked.

        Never raises for a bad key, so callers answer every failure the same way.
        """
        key_id = parse_key_id(key)
        if key_id is None:
            return None
        digest = self._digest(key)
        now = self._monotonic()
        if self._feed is not None and self._feed.changed():
            self._forget_cached()
        with self._lock:
            cached = self._cache.get(key_id)
            generation = self._revocations
        if self._fresh(cached, now):
            return self._matching(cached, digest)
        with self._engine.connect() as conn:
            row = conn.execute(select(_keys).where(_keys.c.key_id == key_id)).mappings().first()
        if row is None or row["revoked_at"] is not None or row["scheme"] != SCHEME:
            with self._lock:
                self._cache.pop(key_id, None)
            return None
        if not hmac.compare_digest(str(row["digest"]), digest):
            return None
        principal = Principal(
            key_id=key_id,
            name=row["name"],
            role=row["role"],
            created_at=datetime.fromisoformat(row["created_at"]),
        )
        if self._ttl > 0:
            with self._lock:
                # A revocation while we read the row must not be undone by caching it.
                if generation == self._revocations:
                    self._cache[key_id] = _Verified(str(row["digest"]), principal, now)
        return principal

    def cached(self, key: str) -> tuple[bool, Principal | None]:
        """``authenticate`` answered from memory alone, without I/O, so the event loop may ask.

        ``(True, principal or None)`` when memory decides; ``(False, None)`` when the database
        or a revocation feed must be asked (then call ``authenticate``). Malformed keys and keys
        whose cached digest differs are refused here; a fresh cache entry is exactly what
        ``authenticate`` would trust, so revocation semantics are the same.
        """
        if self._feed is not None:
            return False, None  # polling the feed is I/O: replicas go through authenticate
        key_id = parse_key_id(key)
        if key_id is None:
            return True, None
        with self._lock:
            cached = self._cache.get(key_id)
        if not self._fresh(cached, self._monotonic()):
            return False, None
        return True, self._matching(cached, self._digest(key))

    def _fresh(self, cached: _Verified | None, now: float) -> TypeGuard[_Verified]:
        return cached is not None and now - cached.checked_at < self._ttl

    @staticmethod
    def _matching(cached: _Verified, digest: str) -> Principal | None:
        return cached.principal if hmac.compare_digest(cached.digest, digest) else None

    def revoke(self, key_id: str) -> KeyInfo:
        """Revoke a key from now on; revoking it again changes nothing. Returns its record.

        Raises
        ------
        KeyNotFoundError
            If no key has this id.
        """
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    update(_keys)
                    .where(_keys.c.key_id == key_id, _keys.c.revoked_at.is_(None))
                    .values(revoked_at=self._clock().isoformat())
                )
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot revoke key {key_id}: {exc}") from exc
        self._forget_cached(key_id)
        info = self.info(key_id)
        if info is None:
            raise KeyNotFoundError(f"no api key has id {key_id!r}")
        if self._feed is not None:
            self._feed.announce(key_id)
        return info

    def _forget_cached(self, key_id: str | None = None) -> None:
        """Drop one cached key (all if None), after a revocation was committed: an
        authenticate that read the row before it sees a new generation and caches nothing."""
        with self._lock:
            self._revocations += 1
            if key_id is None:
                self._cache.clear()
            else:
                self._cache.pop(key_id, None)

    def info(self, key_id: str) -> KeyInfo | None:
        """The record of one key, or None if no key has this id."""
        with self._engine.connect() as conn:
            row = conn.execute(select(_keys).where(_keys.c.key_id == key_id)).mappings().first()
        return _to_info(row) if row is not None else None

    def list(self, *, include_revoked: bool = True) -> builtins.list[KeyInfo]:
        """Every key, oldest first, without secrets or digests."""
        query = select(_keys).order_by(_keys.c.created_at, _keys.c.key_id)
        if not include_revoked:
            query = query.where(_keys.c.revoked_at.is_(None))
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [_to_info(row) for row in rows]


def _to_info(row: Any) -> KeyInfo:
    revoked = row["revoked_at"]
    return KeyInfo(
        key_id=row["key_id"],
        name=row["name"],
        role=row["role"],
        created_at=datetime.fromisoformat(row["created_at"]),
        revoked_at=datetime.fromisoformat(revoked) if revoked is not None else None,
    )
