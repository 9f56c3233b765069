"""Bounded per-client state, and the one-sided binomial test on a client's last queries.

Both the extraction detectors and the slowdown monitor keep one small state per client
(:class:`Clients`: at most ``max_clients``, the least recently seen forgotten first) and
count flagged queries in a ring of the client's last ``window`` ones (:class:`WindowTest`:
an alarm when the count is improbably high for the benign rate; critical counts are
precomputed, so a query costs O(1)).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

from mlwarden.errors import DataError, ParameterError
from mlwarden.serve._state_calls import StateCall, Steps, drive
from mlwarden.serve._verdict import Verdict

if TYPE_CHECKING:
    from mlwarden.serve._state import FlagStore, GuardState, QueryLog

__all__ = [
    "Clients",
    "FlagWindow",
    "LocalFlags",
    "LogCodec",
    "WindowTest",
    "critical_counts",
    "replay_steps",
]

S = TypeVar("S")
E = TypeVar("E")
T = TypeVar("T")


class Clients(Generic[S]):
    """Per-client states, at most ``max_clients``, least recently seen evicted first.

    ``get`` creates a missing state with ``factory``; callers hold ``lock`` around a
    read-modify-write of a state (``drop`` takes it itself).
    """

    def __init__(self, factory: Callable[[], S], max_clients: int) -> None:
        if max_clients < 1:
            raise ParameterError(f"max_clients must be >= 1, got {max_clients}")
        self._factory = factory
        self.max_clients = max_clients
        self._states: OrderedDict[str, S] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, client: str) -> S:
        """The client's state, created if new; marks the client as the most recently seen."""
        state = self._states.get(client)
        if state is None:
            state = self._factory()
            self._states[client] = state
            if len(self._states) > self.max_clients:
                self._states.popitem(last=False)
        else:
            self._states.move_to_end(client)
        return state

    def peek(self, client: str) -> S | None:
        """The client's state, or None; does not change the eviction order."""
        return self._states.get(client)

    def drop(self, client: str) -> None:
        """Forget the client."""
        with self.lock:
            self._states.pop(client, None)

    def __len__(self) -> int:
        return len(self._states)


class LogCodec(Generic[E]):
    """How one detector writes a query into a shared log entry and reads it back."""

    def __init__(self, encode: Callable[[E], str], decode: Callable[[str], E]) -> None:
        self.encode, self.decode = encode, decode


def _stream_order(entry_id: str) -> tuple[int, int]:
    """A Redis stream id (``ms-seq``) as a sortable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def replay_steps(
    clients: Clients[S],
    log: QueryLog | None,
    client: str,
    item: E,
    apply: Callable[[S, E], None],
    judge: Callable[[S], T],
    codec: LogCodec[E],
) -> Steps[T]:
    """Apply one query of ``client`` to its state and judge the state, as one server would
    (as steps: the log exchange is the one call they wait for).

    Without ``log`` (one replica) the query is applied here. With a shared log, the query is
    appended to the client's log and every entry this replica has not applied yet (the other
    replicas' queries and this one, read back through ``codec``) is applied in log order, so
    every replica's state is the same function of the same queries. If the shared state fails
    open, the query is applied here alone. The state must have a ``seen`` attribute (the last
    entry id applied, ``"0-0"`` at first).
    """
    if log is None:
        with clients.lock:
            state = clients.get(client)
            apply(state, item)
            return judge(state)
    with clients.lock:
        after: str = clients.get(client).seen  # type: ignore[attr-defined]
    # no lock held over the network
    entries = yield log.exchange_call(client, codec.encode(item), after)
    with clients.lock:
        state = clients.get(client)
        if entries is None:
            apply(state, item)
        for entry_id, logged in entries or ():
            if _stream_order(entry_id) <= _stream_order(state.seen):  # type: ignore[attr-defined]
                continue  # applied already, by a concurrent request of this client
            apply(state, codec.decode(logged))
            state.seen = entry_id  # type: ignore[attr-defined]
        return judge(state)


class FlagWindow:
    """A ring of 0/1 flags over the last queries, with their running count."""

    __slots__ = ("count", "flags", "head", "seen")

    def __init__(self, size: int) -> None:
        self.flags = np.zeros(size, dtype=np.bool_)
        self.head = 0
        self.count = 0
        self.seen = 0

    def push(self, flag: bool) -> None:
        """Add one flag, dropping the oldest once the ring is full."""
        if self.seen >= len(self.flags):
            self.count -= int(self.flags[self.head])
        self.flags[self.head] = flag
        self.count += int(flag)
        self.head = (self.head + 1) % len(self.flags)
        self.seen += 1

    @property
    def n(self) -> int:
        """Flags currently in the ring."""
        return min(self.seen, len(self.flags))


class LocalFlags:
    """Flag windows in this process, at most ``max_clients``, least recently seen dropped."""

    def __init__(self, window: int, max_clients: int) -> None:
        self.window = window
        self._clients: Clients[FlagWindow] = Clients(lambda: FlagWindow(window), max_clients)

    def push(self, client: str, flag: bool) -> tuple[int, int]:
        """Add one flag; return the flags held and how many of them are set."""
        with self._clients.lock:
            state = self._clients.get(client)
            state.push(flag)
            return state.n, state.count

    def push_call(self, client: str, flag: bool) -> StateCall[tuple[int, int]]:
        """:meth:`push`, made when the call is answered."""
        return StateCall(lambda: self.push(client, flag))

    def size(self, client: str) -> int:
        """Flags stored for ``client`` (its ring's length; 0 if unknown)."""
        state = self._clients.peek(client)
        return 0 if state is None else len(state.flags)

    def drop(self, client: str) -> None:
        """Forget ``client``."""
        self._clients.drop(client)

    def __len__(self) -> int:
        return len(self._clients)


def critical_counts(window: int, rate: float, alpha: float) -> NDArray[np.int64]:
    """For n = 0..window, the least count k with P(Binomial(n, rate) >= k) <= alpha
    (n + 1 where no count is that unlikely)."""
    from scipy.stats import binom

    critical = np.empty(window + 1, dtype=np.int64)
    for n in range(window + 1):
        k = np.arange(n + 1)
        tail = binom.sf(k - 1, n, rate)  # P(X >= k)
        hits = np.flatnonzero(tail <= alpha)
        critical[n] = hits[0] if len(hits) else n + 1
    return critical


class WindowTest:
    """The one-sided binomial test on each client's last ``window`` flags, at level ``alpha``.

    :meth:`calibrate` sets the benign flag rate; :meth:`push` then records one flag of a
    client and tests its window once ``min_queries`` flags were seen.
    """

    def __init__(
        self, name: str, window: int, min_queries: int, alpha: float, max_clients: int
    ) -> None:
        if not 1 <= min_queries <= window:
            raise ParameterError(f"need 1 <= min_queries <= window, got {min_queries} and {window}")
        if not 0.0 < alpha < 1.0:
            raise ParameterError(f"alpha must be in (0, 1), got {alpha}")
        self.name = name
        self.window = window
        self.min_queries = min_queries
        self.alpha = alpha
        self.max_clients = max_clients
        self._flags: FlagStore = LocalFlags(window, max_clients)
        self.rate: float | None = None
        self._critical: NDArray[np.int64] | None = None

    def calibrate(self, rate: float) -> None:
        """Set the benign rate of flagged queries and precompute the critical counts."""
        self.rate = rate
        self._critical = critical_counts(self.window, rate, self.alpha)

    def push(self, client: str, flag: bool, what: str) -> Verdict:
        """Record one flag of ``client`` and test its window (``what``: what a flag means)."""
        return drive(self.push_steps(client, flag, what))

    def push_steps(self, client: str, flag: bool, what: str) -> Steps[Verdict]:
        """:meth:`push` as steps: the flag's push is the call they wait for."""
        if self._critical is None or self.rate is None:
            raise DataError(f"{self.name}: call fit() with benign rows before observing")
        n, count = yield self._flags.push_call(client, flag)
        if n < self.min_queries:
            return Verdict(
                detector=self.name,
                client=client,
                alarm=False,
                statistic=float(count),
                threshold=None,
                n=n,
                reason=f"{n} of {self.min_queries} queries needed",
            )
        critical = int(self._critical[n])
        alarm = count >= critical
        return Verdict(
            detector=self.name,
            client=client,
            alarm=alarm,
            statistic=float(count),
            threshold=float(critical),
            n=n,
            reason=(
                f"{count} of the last {n} queries {what} (benign rate {self.rate:.3g}; "
                f"{critical} or more has probability <= {self.alpha:g})"
            ),
        )

    def share(self, state: GuardState) -> None:
        """Keep the windows in ``state`` from now on (Redis: one window per client across
        replicas); flags already pushed stay behind."""
        self._flags = state.flags(self.name, self.window, self.max_clients)

    def state_size(self, client: str) -> int:
        """Stored flags for ``client`` (0 if unknown)."""
        return self._flags.size(client)

    @property
    def n_clients(self) -> int:
        """Clients currently tracked."""
        return len(self._flags)

    def reset(self, client: str) -> None:
        """Forget ``client``'s flags."""
        self._flags.drop(client)
