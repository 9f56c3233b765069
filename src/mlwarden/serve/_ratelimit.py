"""Per-key token-bucket rate limiting for the model server.

Each key owns a bucket of at most ``burst`` tokens that refills at ``rate_per_s`` tokens per
second; a request spends ``cost`` tokens or is refused with the exact wait until it could pass.
Over any interval of ``t`` seconds a key is therefore granted at most ``burst + rate_per_s * t``
tokens (Turner, "New directions in communications", IEEE Commun. Mag. 1986, the classic token
bucket).

Memory is bounded: a bucket that has been idle long enough to be full again carries no state
(a fresh bucket is full), so it is dropped; and at most ``max_keys`` buckets are kept, least
recently used evicted first.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from mlwarden.errors import MlwardenError

__all__ = ["Decision", "RateLimitError", "TokenBucketLimiter"]

# Refill arithmetic is floating point: a request arriving exactly ``retry_after_s`` later must
# pass even if ``tokens + elapsed * rate`` lands one ulp short of ``cost``.
_EPSILON = 1e-9
# Idle buckets dropped per call, from the least recently used end (amortised O(1)).
_SWEEP_PER_CALL = 2


class RateLimitError(MlwardenError, ValueError):
    """The limiter was built or called with numbers it cannot honour (e.g. ``cost > burst``)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The limiter's answer to one request.

    Attributes
    ----------
    allowed:
        Whether the request may proceed; its tokens were spent only if so.
    retry_after_s:
        Seconds until the same request would be allowed (0.0 when allowed); the value for an
        HTTP ``Retry-After`` header, rounded up.
    remaining:
        Whole tokens left in the key's bucket after this decision.
    """

    allowed: bool
    retry_after_s: float
    remaining: int


class _Bucket:
    __slots__ = ("last", "tokens")

    def __init__(self, tokens: float, last: float) -> None:
        self.tokens = tokens
        self.last = last


class TokenBucketLimiter:
    """Thread-safe token buckets, one per key, with a hard bound on the number kept.

    Parameters
    ----------
    rate_per_s:
        Tokens added to each bucket per second (the sustained request rate).
    burst:
        Bucket capacity: how many requests a rested key may make at once.
    clock:
        Monotonic seconds; tests inject a fake one.
    max_keys:
        Most buckets held at once. When more keys than this are active within one refill period,
        the least recently used bucket is evicted before it is full again, which forgives that
        key's debt; such evictions are counted in ``forgiven``.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_keys: int = 100_000,
    ) -> None:
        if not (isinstance(rate_per_s, int | float) and math.isfinite(rate_per_s)) or (
            rate_per_s <= 0
        ):
            raise RateLimitError(f"rate_per_s must be a positive finite number, got {rate_per_s!r}")
        if not isinstance(burst, int) or isinstance(burst, bool) or burst < 1:
            raise RateLimitError(f"burst must be an integer >= 1, got {burst!r}")
        if not isinstance(max_keys, int) or max_keys < 1:
            raise RateLimitError(f"max_keys must be an integer >= 1, got {max_keys!r}")
        self.rate_per_s = float(rate_per_s)
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()
        self.forgiven = 0

    def __len__(self) -> int:
        """Number of buckets currently held (keys seen recently and not yet full again)."""
        return len(self._buckets)

    def acquire(self, key: str, cost: int = 1) -> Decision:
        """Spend ``cost`` tokens from ``key``'s bucket if it holds them.

        Raises
        ------
        RateLimitError
            If ``cost`` is not an integer between 1 and ``burst``: such a request could never
            pass, so answering "retry later" would be a lie.
        """
        if not isinstance(cost, int) or isinstance(cost, bool) or not 1 <= cost <= self.burst:
            raise RateLimitError(
                f"cost must be an integer from 1 to burst={self.burst}, got {cost!r}"
            )
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = _Bucket(float(self.burst), now)
                self._buckets[key] = bucket
            else:
                elapsed = max(0.0, now - bucket.last)
                bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate_per_s)
                bucket.last = max(bucket.last, now)
                self._buckets.move_to_end(key)
            if bucket.tokens + _EPSILON >= cost:
                bucket.tokens = max(0.0, bucket.tokens - cost)
                decision = Decision(True, 0.0, int(bucket.tokens + _EPSILON))
            else:
                wait = (cost - bucket.tokens) / self.rate_per_s
                decision = Decision(False, wait, int(bucket.tokens + _EPSILON))
            self._sweep(now)
        return decision

    def wait_s(self, key: str, cost: int) -> float:
        """Seconds until ``key``'s bucket holds ``cost`` tokens (``cost`` clipped to the burst),
        without spending any: what to put in ``Retry-After`` for a refused request."""
        need = float(min(max(int(cost), 1), self.burst))
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                return 0.0
            tokens = min(
                float(self.burst), bucket.tokens + max(0.0, now - bucket.last) * self.rate_per_s
            )
        return max(0.0, (need - tokens) / self.rate_per_s)

    def _sweep(self, now: float) -> None:
        """Drop a few idle-and-full buckets, then enforce ``max_keys``. Call with the lock held."""
        for _ in range(_SWEEP_PER_CALL):
            if not self._buckets:
                break
            key, oldest = next(iter(self._buckets.items()))
            if self._is_full(oldest, now):
                del self._buckets[key]
            else:
                break
        while len(self._buckets) > self.max_keys:
            _, evicted = self._buckets.popitem(last=False)
            if not self._is_full(evicted, now):
                self.forgiven += 1

    def _is_full(self, bucket: _Bucket, now: float) -> bool:
        refilled = bucket.tokens + max(0.0, now - bucket.last) * self.rate_per_s
        return refilled + _EPSILON >= self.burst
