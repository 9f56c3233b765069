"""Guard state in Redis, shared by every replica of a deployment.

- a token bucket is one hash, refilled and spent by one Lua script (atomic: two replicas never
  spend the same token), timed by the Redis server's clock so replicas need not agree on time;
- a detector window is one list per client and detector, pushed and counted by one Lua script,
  expiring after a day without queries;
- an allowance over a sliding window (``/v1/explain``'s explanations per hour) is a sorted set
  of event times per client;
- a detector that needs a client's past queries themselves (PRADA's growing sets) reads them
  from a stream per client and detector: each replica appends its query and replays, in stream
  order, every entry it has not applied yet, so all replicas hold the same state;
- blocks and throttles are sets; a key revocation bumps an epoch that every replica reads at
  most every :data:`REVOCATION_POLL_S` seconds and then drops its cached keys, so a revoked key
  is refused everywhere within a second (the key database stays the authority).

When Redis cannot answer, the state follows its ``on_error`` as every guard does
(:class:`~mlwarden.serve._guard_run.GuardRun`): ``closed`` refuses the request (503);
``open`` counts the failure, names ``state`` in ``X-Mlwarden-Fail-Open`` and falls back to
this process's own state for that request.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, MutableSet, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from mlwarden.errors import CapabilityError, SpecError, StoreError
from mlwarden.serve._config import OnError, SharedState
from mlwarden.serve._guard_run import GuardRun
from mlwarden.serve._metrics import ServerMetrics
from mlwarden.serve._ratelimit import Decision
from mlwarden.serve._state import (
    Allowance,
    FlagStore,
    Limiter,
    LocalAllowance,
    LocalState,
    QueryLog,
)
from mlwarden.serve._state_calls import StateCall

if TYPE_CHECKING:
    from redis import Redis

__all__ = [
    "REVOCATIONS_KEY",
    "REVOCATION_POLL_S",
    "RedisState",
    "RevocationFeed",
    "RevocationNotice",
    "open_state",
]

_log = logging.getLogger(__name__)
T = TypeVar("T")

#: Longest a replica trusts its cached keys without asking Redis whether any key was revoked.
REVOCATION_POLL_S = 0.5
#: The revocation epoch: one for every deployment on a Redis, as keys belong to a key store.
REVOCATIONS_KEY = "mlwarden:revocations"
#: A client's detector window is forgotten after this long without a query.
WINDOW_TTL_S = 86_400
#: Socket timeouts: a Redis that does not answer within this is treated as down.
REDIS_TIMEOUT_S = 0.5

# KEYS[1] bucket hash; ARGV rate, burst, cost, spend (1/0). Returns {allowed, wait, tokens}.
_BUCKET_LUA = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local cost, spend = tonumber(ARGV[3]), ARGV[4] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local held = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local tokens, last = tonumber(held[1]), tonumber(held[2])
if tokens == nil or last == nil then tokens, last = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
last = math.max(last, now)
local allowed, wait = 0, 0
if tokens + 1e-9 >= cost then
  allowed = 1
  if spend then tokens = math.max(0, tokens - cost) end
else
  wait = (cost - tokens) / rate
end
if spend then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'last', tostring(last))
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
end
return {allowed, tostring(wait), tostring(tokens)}
"""

# KEYS[1] window list; ARGV flag (0/1), window, ttl ms. Returns {flags held, flags set}.
_WINDOW_LUA = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local flags = redis.call('LRANGE', KEYS[1], 0, -1)
local count = 0
for i = 1, #flags do if flags[i] == '1' then count = count + 1 end end
return {#flags, count}
"""

_WINDOW_LUA_BYTES = _WINDOW_LUA.encode()  # what a batch sends: encoded once, not per call


# KEYS[1] events sorted set; ARGV window s, n new events, unique tag. Returns {held, retry s}.
_EVENTS_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window, n = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
for i = 1, n do redis.call('ZADD', KEYS[1], now, ARGV[3] .. ':' .. i) end
if n > 0 then redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000)) end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local retry = 0
if #oldest > 0 then retry = window - (now - tonumber(oldest[2])) end
return {redis.call('ZCARD', KEYS[1]), tostring(retry)}
"""


class RedisState:
    """Guard state in Redis, shared by every replica given the same URL and deployment name.

    Parameters
    ----------
    settings:
        The deployment's ``state``: the Redis URL and what a Redis failure does.
    namespace:
        Prefix of every key (the deployment's name), so deployments sharing a Redis stay apart.
    metrics:
        Where failures are counted (``mlwarden_guard_errors{guard="state"}``).
    client:
        A ready Redis client (tests); default one made from the URL with short timeouts.
    """

    def __init__(
        self,
        settings: SharedState,
        namespace: str,
        metrics: ServerMetrics,
        *,
        client: Redis | None = None,
    ) -> None:
        if client is None:
            try:
                import redis
            except ImportError as exc:
                raise CapabilityError(
                    "state: redis:// needs the redis client: pip install 'mlwarden[redis]'"
                ) from exc
            client = redis.Redis.from_url(
                settings.url,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
                decode_responses=True,
            )
        self.redis = client
        self.on_error: OnError = settings.on_error
        self.prefix = f"mlwarden:{namespace}"
        self.metrics = metrics
        self._local = LocalState()
        self._bucket = client.register_script(_BUCKET_LUA)
        self._window = client.register_script(_WINDOW_LUA)
        self._events = client.register_script(_EVENTS_LUA)

    def check(self) -> None:
        """Ping Redis; unreachable, refuse to start when failing closed, else warn."""
        from redis import RedisError

        try:
            self.redis.ping()
        except RedisError as exc:
            if self.on_error == "closed":
                raise StoreError(
                    f"cannot reach the shared state ({exc}); start Redis, or set "
                    "state.on_error: open to serve on per-replica state meanwhile"
                ) from exc
            _log.warning("shared state unreachable, serving on this replica's state: %s", exc)

    def call(self, op: Callable[[], T], fallback: Callable[[], T]) -> T:
        """``op()`` against Redis; if Redis fails, refuse (closed) or answer ``fallback()``."""
        from redis import RedisError

        try:
            return op()
        except RedisError as exc:
            self._failed(exc)
            return fallback()

    def answer(self, calls: Sequence[StateCall[Any]]) -> list[Any]:
        """Several calls in one round trip (one MULTI/EXEC pipeline, so each is as atomic as
        alone); if Redis fails, refuse (closed) or answer every call's fallback (open)."""
        from redis import RedisError

        if len(calls) == 1:
            return [calls[0].run()]
        pipe = self.redis.pipeline(transaction=True)
        sizes = [call.queue(pipe) for call in calls]  # type: ignore[misc]
        try:
            replies = pipe.execute()
        except RedisError as exc:
            self._failed(exc)
            return [call.fallback() for call in calls]  # type: ignore[misc]
        out, at = [], 0
        for call, size in zip(calls, sizes, strict=True):
            out.append(call.parse(replies[at : at + size]))  # type: ignore[misc]
            at += size
        return out

    def _failed(self, exc: Exception) -> None:
        """Count a Redis failure on the request's guard run: raises when failing closed."""
        run = GuardRun.current()
        if run is None or run.metrics is not self.metrics:
            run = GuardRun(self.metrics)
        run.failed("state", self.on_error, cause=exc)
        _log.warning("shared state failed open: %s", exc)

    def key(self, *parts: str) -> str:
        """A Redis key under this deployment's prefix."""
        return ":".join((self.prefix, *parts))

    def limiter(
        self, name: str, rate_per_s: float, burst: int, clock: Callable[[], float]
    ) -> Limiter:
        """Token buckets in Redis (timed by its clock), spent atomically by a Lua script."""
        return _RedisLimiter(self, name, self._local.limiter(name, rate_per_s, burst, clock))

    def flags(self, name: str, window: int, max_clients: int) -> FlagStore:
        """Flag windows in Redis lists, pushed and counted atomically."""
        return _RedisFlags(self, name, window, self._local.flags(name, window, max_clients))

    def restrictions(self, name: str) -> MutableSet[str]:
        """A Redis set, written through to a local one that answers while Redis is down."""
        return _RedisSet(self, name)

    def allowance(
        self, name: str, allowed: int, window_s: float, clock: Callable[[], float]
    ) -> Allowance:
        """Event times in a Redis sorted set per client, counted on Redis's clock."""
        return _RedisAllowance(self, name, LocalAllowance(allowed, window_s, clock))

    def query_log(self, name: str, max_entries: int) -> QueryLog:
        """A Redis stream per client, capped near ``max_entries``, expiring after a day."""
        return _RedisLog(self, name, max_entries)

    def announce_revocation(self, key_id: str) -> None:
        """Tell every replica that a key was revoked (they drop their cached keys)."""
        self.call(lambda: self.redis.incr(REVOCATIONS_KEY), lambda: 0)

    def revocation_feed(self) -> RevocationFeed:
        """What a :class:`~mlwarden.serve._keys.KeyStore` polls to see remote revocations."""
        return RevocationFeed(self)


class RevocationFeed:
    """Polls the revocation epoch at most every :data:`REVOCATION_POLL_S` seconds."""

    def __init__(self, state: RedisState, clock: Callable[[], float] = time.monotonic) -> None:
        self._state = state
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: str | None = None
        self._polled = -float("inf")

    def announce(self, key_id: str) -> None:
        """A key was revoked here: tell the other replicas."""
        self._state.announce_revocation(key_id)

    def changed(self) -> bool:
        """Whether a key may have been revoked since the last poll (poll due, epoch moved)."""
        now = self._clock()
        with self._lock:
            if now - self._polled < REVOCATION_POLL_S:
                return False
            self._polled = now
        redis = self._state.redis
        epoch = self._state.call(lambda: str(redis.get(REVOCATIONS_KEY) or "0"), lambda: self._seen)
        with self._lock:
            moved = epoch != self._seen
            self._seen = epoch
        return moved


class _RedisLimiter:
    def __init__(self, state: RedisState, name: str, local: Limiter) -> None:
        self._state = state
        self._name = name
        self._local = local
        self.rate_per_s = local.rate_per_s
        self.burst = local.burst

    def _run(self, key: str, cost: int, spend: bool) -> tuple[bool, float, float]:
        args = [self.rate_per_s, self.burst, cost, 1 if spend else 0]
        reply: Any = self._state._bucket(
            keys=[self._state.key("bucket", self._name, key)], args=args
        )
        return bool(int(reply[0])), float(reply[1]), float(reply[2])

    def acquire(self, key: str, cost: int = 1) -> Decision:
        """Spend ``cost`` tokens of ``key``'s shared bucket if it holds them."""
        if not isinstance(cost, int) or isinstance(cost, bool) or not 1 <= cost <= self.burst:
            return self._local.acquire(key, cost)  # raises the limiter's own error

        def shared() -> Decision:
            allowed, wait, tokens = self._run(key, cost, spend=True)
            return Decision(allowed, wait, int(tokens + 1e-9))

        return self._state.call(shared, lambda: self._local.acquire(key, cost))

    def wait_s(self, key: str, cost: int) -> float:
        """Seconds until ``key``'s shared bucket holds ``cost`` tokens."""
        need = min(max(int(cost), 1), self.burst)

        def shared() -> float:
            allowed, wait, _ = self._run(key, need, spend=False)
            return 0.0 if allowed else wait

        return self._state.call(shared, lambda: self._local.wait_s(key, cost))


class _RedisFlags:
    def __init__(self, state: RedisState, name: str, window: int, local: FlagStore) -> None:
        self._state = state
        self._name = name
        self._ttl_ms = WINDOW_TTL_S * 1000
        self.window = window
        self._local = local

    def push(self, client: str, flag: bool) -> tuple[int, int]:
        key = self._state.key("flags", self._name, client)

        def shared() -> tuple[int, int]:
            reply: Any = self._state._window(
                keys=[key], args=[int(flag), self.window, self._ttl_ms]
            )
            return int(reply[0]), int(reply[1])

        return self._state.call(shared, lambda: self._local.push(client, flag))

    def push_call(self, client: str, flag: bool) -> StateCall[tuple[int, int]]:
        key = self._state.key("flags", self._name, client)

        def queue(pipe: Any) -> int:
            # EVAL, not EVALSHA: a Redis that lost its script cache cannot fail one command of
            # the batch after the others ran (Redis caches the compiled script by its text)
            pipe.eval(_WINDOW_LUA_BYTES, 1, key, int(flag), self.window, self._ttl_ms)
            return 1

        return StateCall(
            lambda: self.push(client, flag),
            batch=self._state,
            queue=queue,
            parse=lambda replies: (int(replies[0][0]), int(replies[0][1])),
            fallback=lambda: self._local.push(client, flag),
        )

    def size(self, client: str) -> int:
        key = self._state.key("flags", self._name, client)
        held = self._state.call(
            lambda: int(self._state.redis.exists(key)), lambda: self._local.size(client)
        )
        return self.window if held else 0

    def drop(self, client: str) -> None:
        self._local.drop(client)
        self._state.call(
            lambda: self._state.redis.delete(self._state.key("flags", self._name, client)),
            lambda: 0,
        )

    def __len__(self) -> int:
        pattern = self._state.key("flags", self._name, "*")
        return self._state.call(
            lambda: sum(1 for _ in self._state.redis.scan_iter(match=pattern, count=1000)),
            lambda: len(self._local),
        )


class _RedisLog:
    def __init__(self, state: RedisState, name: str, max_entries: int) -> None:
        self._state = state
        self._name = name
        self._max_entries = max_entries

    def exchange(self, client: str, entry: str, after: str) -> list[tuple[str, str]] | None:
        queue = self._queue(client, entry, after)

        def shared() -> list[tuple[str, str]]:
            pipe = self._state.redis.pipeline(transaction=True)
            queue(pipe)
            return _entries(pipe.execute())

        return self._state.call(shared, lambda: None)

    def exchange_call(
        self, client: str, entry: str, after: str
    ) -> StateCall[list[tuple[str, str]] | None]:
        return StateCall(
            lambda: self.exchange(client, entry, after),
            batch=self._state,
            queue=self._queue(client, entry, after),
            parse=_entries,
            fallback=lambda: None,
        )

    def _queue(self, client: str, entry: str, after: str) -> Callable[[Any], int]:
        """Append ``entry``, renew the log's expiry and read what follows ``after``."""
        key = self._state.key("log", self._name, client)

        def queue(pipe: Any) -> int:
            pipe.xadd(key, {"q": entry}, maxlen=self._max_entries, approximate=True)
            pipe.pexpire(key, WINDOW_TTL_S * 1000)
            pipe.xrange(key, min=f"({after}")
            return 3

        return queue

    def drop(self, client: str) -> None:
        key = self._state.key("log", self._name, client)
        self._state.call(lambda: self._state.redis.delete(key), lambda: 0)


def _entries(replies: list[Any]) -> list[tuple[str, str]]:
    """A log exchange's entries from its three replies (the last is the range read)."""
    return [(str(i), str(fields["q"])) for i, fields in replies[-1]]


class _RedisAllowance:
    def __init__(self, state: RedisState, name: str, local: LocalAllowance) -> None:
        self._state = state
        self._name = name
        self._local = local
        self.allowed, self.window_s = local.allowed, local.window_s

    def _run(self, client: str, n: int) -> tuple[int, float]:
        key = self._state.key("events", self._name, client)
        reply: Any = self._state._events(keys=[key], args=[self.window_s, n, uuid.uuid4().hex])
        return int(reply[0]), float(reply[1])

    def left(self, client: str) -> int:
        return self._state.call(
            lambda: self.allowed - self._run(client, 0)[0], lambda: self._local.left(client)
        )

    def spend(self, client: str, n: int) -> None:
        self._local.spend(client, n)
        self._state.call(lambda: self._run(client, n), lambda: (0, 0.0))

    def retry_s(self, client: str) -> float:
        return self._state.call(
            lambda: self._run(client, 0)[1], lambda: self._local.retry_s(client)
        )


class _RedisSet(MutableSet[str]):
    def __init__(self, state: RedisState, name: str) -> None:
        self._state = state
        self._key = state.key("set", name)
        self._local: set[str] = set()

    def __contains__(self, client: object) -> bool:
        if not isinstance(client, str):
            return False
        return self._state.call(
            lambda: bool(self._state.redis.sismember(self._key, client)),
            lambda: client in self._local,
        )

    def contains_call(self, client: str) -> StateCall[bool]:
        def queue(pipe: Any) -> int:
            pipe.sismember(self._key, client)
            return 1

        return StateCall(
            lambda: client in self,
            batch=self._state,
            queue=queue,
            parse=lambda replies: bool(replies[0]),
            fallback=lambda: client in self._local,
        )

    def _members(self) -> set[str]:
        remote: Any = self._state.call(
            lambda: self._state.redis.smembers(self._key), lambda: self._local
        )
        return {str(m) for m in remote}

    def __iter__(self) -> Iterator[str]:
        return iter(self._members())

    def __len__(self) -> int:
        return len(self._members())

    def add(self, client: str) -> None:
        self._local.add(client)
        self._state.call(lambda: self._state.redis.sadd(self._key, client), lambda: 0)

    def discard(self, client: str) -> None:
        self._local.discard(client)
        self._state.call(lambda: self._state.redis.srem(self._key, client), lambda: 0)


class RevocationNotice:
    """The revoking side alone (``mlwarden keys revoke --state``): announces, never polls."""

    def __init__(self, url: str) -> None:
        from pydantic import ValidationError

        try:
            settings = SharedState(url=url)
        except ValidationError:
            raise SpecError(
                f"expected a Redis URL such as redis://host:6379/0, got {url!r}"
            ) from None
        self.url = url
        self._state = RedisState(settings, "cli", ServerMetrics())

    def announce(self, key_id: str) -> None:
        """Tell the replicas; StoreError if Redis cannot be reached (they then see the
        revocation when their cached keys expire)."""
        from redis import RedisError

        try:
            self._state.redis.incr(REVOCATIONS_KEY)
        except RedisError as exc:
            raise StoreError(
                f"{key_id} is revoked, but the replicas could not be told through "
                f"{self.url} ({exc}): they refuse it once their cached keys expire"
            ) from exc

    def changed(self) -> bool:
        """Never: this side keeps no cached keys worth dropping."""
        return False


def open_state(
    settings: SharedState | None, namespace: str, metrics: ServerMetrics
) -> LocalState | RedisState:
    """The deployment's state: in this process without ``settings``, else in Redis (checked:
    unreachable, it refuses to start when failing closed)."""
    if settings is None:
        return LocalState()
    state = RedisState(settings, namespace, metrics)
    state.check()
    return state
