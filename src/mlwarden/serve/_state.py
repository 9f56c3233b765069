"""Where the guards keep what they remember between requests: in this process, or shared.

The guards ask one :class:`GuardState` for their token buckets (:class:`Limiter`), per-client
flag windows (:class:`FlagStore`), sliding-window allowances (:class:`Allowance`) and sets of
restricted clients. :class:`LocalState`, the default, keeps them in this process's memory: one
replica's state. Replicas behind a load balancer would then give a thief one fresh budget each,
so a deployment with ``state: redis://host:port/db`` gets ``RedisState`` (its own module)
instead, where every replica spends from the same bucket and counts into the same window.

The flag windows and query logs also hand out their calls as :class:`StateCall` s
(:mod:`mlwarden.serve._state_calls`), so that a detector suite asks shared state once a query.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, MutableSet
from typing import TYPE_CHECKING, Protocol

from mlwarden.serve._ratelimit import Decision, TokenBucketLimiter
from mlwarden.serve._state_calls import StateCall

if TYPE_CHECKING:
    from mlwarden.serve._keys import RevocationFeed

__all__ = [
    "Allowance",
    "FlagStore",
    "GuardState",
    "Limiter",
    "LocalAllowance",
    "LocalState",
    "QueryLog",
]


class Limiter(Protocol):
    """Per-key token buckets (:class:`~mlwarden.serve._ratelimit.TokenBucketLimiter`'s verbs)."""

    rate_per_s: float
    burst: int

    def acquire(self, key: str, cost: int = 1) -> Decision:
        """Spend ``cost`` tokens of ``key`` if it holds them."""
        ...

    def wait_s(self, key: str, cost: int) -> float:
        """Seconds until ``key`` holds ``cost`` tokens, spending none."""
        ...


class FlagStore(Protocol):
    """Each client's last ``window`` 0/1 flags of one detector."""

    def push(self, client: str, flag: bool) -> tuple[int, int]:
        """Add one flag; return the flags held and how many of them are set."""
        ...

    def push_call(self, client: str, flag: bool) -> StateCall[tuple[int, int]]:
        """:meth:`push` as a call a detector's steps yield (made when it is answered)."""
        ...

    def size(self, client: str) -> int:
        """Flags kept for ``client`` (0 if unknown)."""
        ...

    def drop(self, client: str) -> None:
        """Forget ``client``."""
        ...

    def __len__(self) -> int:
        """Clients tracked."""
        ...


class Allowance(Protocol):
    """Each client's events in the last ``window_s`` seconds, against ``allowed`` of them."""

    allowed: int
    window_s: float

    def left(self, client: str) -> int:
        """Events ``client`` may still have in the current window."""
        ...

    def spend(self, client: str, n: int) -> None:
        """Record ``n`` events of ``client`` now."""
        ...

    def retry_s(self, client: str) -> float:
        """Seconds until ``client``'s oldest event in the window expires."""
        ...


class QueryLog(Protocol):
    """Each client's queries in one order every replica reads (a detector replays it)."""

    def exchange(self, client: str, entry: str, after: str) -> list[tuple[str, str]] | None:
        """Append ``entry`` to ``client``'s log; return the entries after id ``after`` (the
        other replicas' and this one, in log order) as ``(id, entry)``. None when the shared
        state failed open: the caller applies its own entry alone."""
        ...

    def exchange_call(
        self, client: str, entry: str, after: str
    ) -> StateCall[list[tuple[str, str]] | None]:
        """:meth:`exchange` as a call a detector's steps yield (made when it is answered)."""
        ...

    def drop(self, client: str) -> None:
        """Forget ``client``'s log."""
        ...


class GuardState(Protocol):
    """Makes the state the guards share: buckets, flag windows, restriction sets."""

    def limiter(
        self, name: str, rate_per_s: float, burst: int, clock: Callable[[], float]
    ) -> Limiter:
        """The token buckets called ``name`` (``clock``: the local buckets' time)."""
        ...

    def flags(self, name: str, window: int, max_clients: int) -> FlagStore:
        """The flag windows of detector ``name``."""
        ...

    def restrictions(self, name: str) -> MutableSet[str]:
        """The set of clients called ``name`` (``blocked``, ``throttled``)."""
        ...

    def allowance(
        self, name: str, allowed: int, window_s: float, clock: Callable[[], float]
    ) -> Allowance:
        """The sliding-window allowances called ``name`` (``clock``: the local ones' time)."""
        ...

    def revocation_feed(self) -> RevocationFeed | None:
        """What the key store polls for revocations made by other replicas (None: none)."""
        ...

    def query_log(self, name: str, max_entries: int) -> QueryLog | None:
        """Detector ``name``'s per-client query logs, keeping about the last ``max_entries``
        (None: this process is the only replica, the detector keeps its own state)."""
        ...


class LocalAllowance:
    """Each client's event times in this process (a deque per client)."""

    def __init__(self, allowed: int, window_s: float, clock: Callable[[], float]) -> None:
        self.allowed, self.window_s, self.clock = allowed, window_s, clock
        self._spent: dict[str, deque[float]] = {}

    def left(self, client: str) -> int:
        """Events ``client`` may still have in the current window."""
        spent = self._spent.setdefault(client, deque())
        while spent and spent[0] <= self.clock() - self.window_s:
            spent.popleft()
        return self.allowed - len(spent)

    def spend(self, client: str, n: int) -> None:
        """Record ``n`` events of ``client`` now."""
        self._spent.setdefault(client, deque()).extend([self.clock()] * n)

    def retry_s(self, client: str) -> float:
        """Seconds until ``client``'s oldest event in the window expires."""
        spent = self._spent.get(client)
        return self.window_s - (self.clock() - spent[0]) if spent else 0.0


class LocalState:
    """Everything in this process's memory: one replica's state, today's behaviour."""

    def limiter(
        self, name: str, rate_per_s: float, burst: int, clock: Callable[[], float]
    ) -> Limiter:
        """In-memory token buckets."""
        return TokenBucketLimiter(rate_per_s, burst, clock=clock)

    def flags(self, name: str, window: int, max_clients: int) -> FlagStore:
        """In-memory flag windows."""
        from mlwarden.serve._windows import LocalFlags

        return LocalFlags(window, max_clients)

    def restrictions(self, name: str) -> MutableSet[str]:
        """A plain set."""
        return set()

    def allowance(
        self, name: str, allowed: int, window_s: float, clock: Callable[[], float]
    ) -> Allowance:
        """In-memory event times."""
        return LocalAllowance(allowed, window_s, clock)

    def revocation_feed(self) -> RevocationFeed | None:
        """None: a revocation through this process's key store takes effect at once."""
        return None

    def query_log(self, name: str, max_entries: int) -> QueryLog | None:
        """None: one replica, nothing to replay."""
        return None
