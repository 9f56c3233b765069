"""Token buckets: burst then refill, exact retry times, per-key isolation, bounded memory."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlwarden.errors import MlwardenError
from mlwarden.serve._ratelimit import Decision, RateLimitError, TokenBucketLimiter


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_a_rested_key_gets_its_burst_then_is_refused() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate_per_s=2.0, burst=3, clock=clock)
    got = [limiter.acquire("k") for _ in range(4)]
    assert [d.allowed for d in got] == [True, True, True, False]
    assert [d.remaining for d in got] == [2, 1, 0, 0]
    assert got[0] == Decision(allowed=True, retry_after_s=0.0, remaining=2)


def test_retry_after_is_exact_and_honoured() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate_per_s=2.0, burst=3, clock=clock)
    for _ in range(3):
        limiter.acquire("k")
    refused = limiter.acquire("k")
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(0.5, abs=1e-12)
    clock.advance(0.25)
    assert limiter.acquire("k").retry_after_s == pytest.approx(0.25, abs=1e-12)
    clock.advance(0.25)
    assert limiter.acquire("k").allowed
    assert not limiter.acquire("k").allowed


def test_refill_is_capped_at_burst() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate_per_s=10.0, burst=5, clock=clock)
    for _ in range(5):
        limiter.acquire("k")
    clock.advance(3600)
    assert sum(limiter.acquire("k").allowed for _ in range(10)) == 5


def test_cost_spends_several_tokens_and_must_fit_the_burst() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=10, clock=clock)
    assert limiter.acquire("k", cost=7) == Decision(True, 0.0, 3)
    refused = limiter.acquire("k", cost=5)
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(2.0)
    assert limiter.acquire("k", cost=3).allowed
    for bad in (0, -1, 11, 1.5, True):
        with pytest.raises(RateLimitError, match="cost"):
            limiter.acquire("k", cost=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rate", "burst"), [(0.0, 1), (-1.0, 1), (float("inf"), 1), (1.0, 0), (1.0, 2.5)]
)
def test_impossible_settings_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(RateLimitError) as info:
        TokenBucketLimiter(rate_per_s=rate, burst=burst)
    assert isinstance(info.value, MlwardenError) and isinstance(info.value, ValueError)


def test_keys_do_not_share_buckets() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=2, clock=clock)
    assert limiter.acquire("a").allowed and limiter.acquire("a").allowed
    assert not limiter.acquire("a").allowed
    assert limiter.acquire("b").allowed and limiter.acquire("b").allowed


def test_idle_buckets_that_are_full_again_are_dropped() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=2, clock=clock)
    for i in range(50):
        limiter.acquire(f"k{i}")
    assert len(limiter) == 50
    clock.advance(0.5)  # half a token back: not full yet, nothing may go
    limiter.acquire("other")
    assert len(limiter) == 51
    clock.advance(10.0)
    for _ in range(30):
        limiter.acquire("other")
    assert len(limiter) == 1
    assert limiter.forgiven == 0


def test_memory_is_bounded_by_max_keys_least_recent_first() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate_per_s=1.0, burst=3, clock=clock, max_keys=100)
    for i in range(1000):
        limiter.acquire(f"k{i}")
        assert len(limiter) <= 100
    assert limiter.forgiven == 900
    # The 100 most recent keys kept their debt.
    assert limiter.acquire("k999").remaining == 1


def test_threads_never_get_more_than_the_burst() -> None:
    limiter = TokenBucketLimiter(rate_per_s=1e-9, burst=100, clock=FakeClock())
    allowed: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        mine = [limiter.acquire("shared").allowed for _ in range(100)]
        with lock:
            allowed.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 100


@settings(max_examples=300, deadline=None)
@given(
    rate=st.floats(min_value=0.01, max_value=1000.0),
    burst=st.integers(min_value=1, max_value=50),
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=5.0),  # time since the previous call
            st.integers(min_value=1, max_value=50),  # cost, clipped to the burst
        ),
        min_size=1,
        max_size=200,
    ),
)
def test_never_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    clock = FakeClock(0.0)
    limiter = TokenBucketLimiter(rate_per_s=rate, burst=burst, clock=clock)
    granted = 0
    for gap, cost in steps:
        clock.advance(gap)
        decision = limiter.acquire("k", cost=min(cost, burst))
        if decision.allowed:
            granted += min(cost, burst)
            assert decision.retry_after_s == 0.0
        else:
            assert decision.retry_after_s > 0.0
        assert 0 <= decision.remaining <= burst
        assert granted <= burst + rate * clock.now + 1e-6 * len(steps)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=0.01, max_value=1000.0),
    burst=st.integers(min_value=1, max_value=50),
    spent=st.integers(min_value=0, max_value=60),
    cost=st.integers(min_value=1, max_value=50),
)
def test_waiting_retry_after_is_always_enough(
    rate: float, burst: int, spent: int, cost: int
) -> None:
    clock = FakeClock(0.0)
    limiter = TokenBucketLimiter(rate_per_s=rate, burst=burst, clock=clock)
    cost = min(cost, burst)
    for _ in range(spent):
        limiter.acquire("k")
    decision = limiter.acquire("k", cost=cost)
    if not decision.allowed:
        clock.advance(decision.retry_after_s)
        assert limiter.acquire("k", cost=cost).allowed


def test_wait_s_says_when_a_cost_fits_without_spending() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(rate_per_s=0.5, burst=2, clock=clock)
    assert limiter.wait_s("k", 2) == 0.0  # a fresh key has its whole burst
    assert limiter.acquire("k", cost=2).allowed
    assert limiter.wait_s("k", 1) == pytest.approx(2.0)
    assert limiter.wait_s("k", 5) == pytest.approx(4.0)  # clipped to the burst
    assert limiter.wait_s("k", 1) == pytest.approx(2.0)  # nothing was spent
