"""Slowdown guard: no alarm on clean early-exit traffic, fast alarms on DeepSloth-like clients,
bounded state, and the compute budget's cap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlwarden.errors import DataError
from mlwarden.serve._slowdown import (
    ComputeBudget,
    ExitMonitor,
    SlowdownPolicy,
    exit_detection_delay,
    exit_false_positive_rate,
    simulate_streams,
)

# 70 % of clean inputs leave at the first of 5 equal-cost exits, then a decaying tail.
FIVE = ([0.70, 0.15, 0.08, 0.04, 0.03], None)
# 6 exits at uneven costs (the first block is cheap), a heavier tail.
SIX = ([0.50, 0.20, 0.12, 0.08, 0.05, 0.05], [0.15, 0.32, 0.50, 0.68, 0.85, 1.0])
DISTRIBUTIONS = {"five-exits": FIVE, "six-exits": SIX}


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fitted(name: str, **kwargs: object) -> ExitMonitor:
    """A monitor fitted on an empirical clean sample (independent of the test streams)."""
    probs, compute = DISTRIBUTIONS[name]
    sample = simulate_streams(probs, 2000, compute=compute, seed=123).compute[0]
    return ExitMonitor(**kwargs).fit(sample)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
def test_no_alarm_over_10000_clean_requests_from_20_clients(name: str) -> None:
    probs, compute = DISTRIBUTIONS[name]
    monitor = fitted(name)
    streams = simulate_streams(probs, 500, compute=compute, n_streams=20, seed=1)
    # Interleave the clients' requests, as a server sees them.
    order = np.random.default_rng(2).permutation(np.repeat(np.arange(20), 500))
    position = np.zeros(20, dtype=np.int64)
    alarms = []
    for client in order.tolist():
        j = position[client]
        position[client] += 1
        e, c = int(streams.exits[client, j]), float(streams.compute[client, j])
        verdict = monitor.observe(f"client-{client}", e, c)
        if verdict.alarm:
            alarms.append((client, j, verdict.reason))
    assert position.sum() == 10_000
    assert alarms == []
    assert monitor.n_clients == 20


@pytest.mark.parametrize("name", sorted(DISTRIBUTIONS))
@pytest.mark.parametrize("attack", ["last-exit", "last-two-exits"])
def test_detected_within_20_requests_of_switching_to_attack_inputs(name: str, attack: str) -> None:
    probs, compute = DISTRIBUTIONS[name]
    k = len(probs)
    attack_probs = np.eye(k)[-1] if attack == "last-exit" else np.r_[np.zeros(k - 2), 0.5, 0.5]
    monitor = fitted(name)
    streams = simulate_streams(
        probs, 300, 40, attack_probs=attack_probs, compute=compute, n_streams=20, seed=3
    )
    delays = []
    for exits, fractions in zip(streams.exits, streams.compute, strict=True):
        first = exit_detection_delay(monitor, exits, fractions)
        assert first is not None
        delays.append(first - 300)
    assert min(delays) >= 1, f"alarm on clean traffic before the switch: {delays}"
    assert max(delays) <= 20, delays
    if attack == "last-exit":
        # Pure compute-1 traffic: the CUSUM needs exactly its documented delay from S = 0
        # (one less when a late clean answer left S above 0).
        assert monitor.cusum_delay_ is not None
        assert monitor.cusum_delay_ - 1 <= max(delays) <= monitor.cusum_delay_


def test_attack_from_the_first_request_is_caught_by_the_cusum() -> None:
    monitor = fitted("five-exits")
    verdicts = [monitor.observe("sloth", 4, 1.0) for _ in range(20)]
    first = next(i for i, v in enumerate(verdicts) if v.alarm)
    assert first + 1 == monitor.cusum_delay_ == 7
    window, cusum = verdicts[first].parts
    assert cusum.detector == "slowdown-cusum" and cusum.alarm
    assert not window.alarm and window.threshold is None  # below min_queries: no window test
    # Reset on alarm: the next attack answer starts S again from 0.
    after = verdicts[first + 1].parts[1]
    reference = monitor.cusum_reference_
    assert reference is not None
    assert not after.alarm and after.statistic == pytest.approx(1.0 - reference)


def test_a_client_mixing_10_percent_attack_inputs_is_caught_by_the_window_test() -> None:
    """Sensitivity: at 10 % attack inputs (mean compute 0.30 -> 0.37, a third of a clean
    std) the CUSUM rarely fires, but the late rate goes from 3 % to 13 % and the window test
    catches every client here, 75 to 1,634 requests after the switch (median about 220). At
    5 % only 6 of these 10 clients are caught within 3,000 requests: below about 10 % the
    guard is not a reliable detector, only a bound on what such a client can cost."""
    probs, _ = FIVE
    monitor = fitted("five-exits")
    streams = simulate_streams(probs, 300, 3000, attack_share=0.1, n_streams=10, seed=4)
    delays = []
    for exits, fractions in zip(streams.exits, streams.compute, strict=True):
        first = exit_detection_delay(monitor, exits, fractions)
        assert first is not None, "a 10 % mix went undetected over 3,000 requests"
        delays.append(first - 300)
    assert min(delays) >= 1
    assert float(np.median(delays)) <= 400, delays
    # And the slow part is the window test's: its verdict is the one alarming.
    exits, fractions = streams.exits[0], streams.compute[0]
    first = exit_detection_delay(monitor, exits, fractions)
    assert first is not None
    monitor.reset("mix")
    for j in range(first):
        verdict = monitor.observe("mix", int(exits[j]), float(fractions[j]))
    assert verdict.alarm and verdict.parts[0].alarm


def test_false_positive_rate_helper() -> None:
    probs, _ = FIVE
    monitor = fitted("five-exits")
    clean = simulate_streams(probs, 500, n_streams=5, seed=5)
    attack = simulate_streams(probs, 0, 30, n_streams=5, seed=6)
    assert (
        exit_false_positive_rate(monitor, list(zip(clean.exits, clean.compute, strict=True))) == 0.0
    )
    assert (
        exit_false_positive_rate(monitor, list(zip(attack.exits, attack.compute, strict=True)))
        == 1.0
    )
    assert monitor.n_clients == 0  # evaluation clients are forgotten


def test_fit_learns_the_clean_distribution() -> None:
    monitor = fitted("five-exits")
    assert monitor.late_ == 1.0  # the last exit
    assert monitor.late_rate_ is not None and 0.02 < monitor.late_rate_ < 0.05
    assert monitor.mean_ is not None and 0.28 < monitor.mean_ < 0.35
    explicit = ExitMonitor(late=0.6).fit(simulate_streams(FIVE[0], 2000, seed=7).compute[0])
    assert explicit.late_ == 0.6
    assert explicit.late_rate_ is not None and 0.12 < explicit.late_rate_ < 0.18
    # A clean sample without spread gets the std floor, not a zero threshold.
    flat = ExitMonitor().fit(np.full(200, 0.2))
    assert flat.std_ == 0.05
    assert not flat.observe("c", 1, 0.4).alarm


def test_state_is_bounded() -> None:
    monitor = fitted("five-exits", window=50, max_clients=8)
    rng = np.random.default_rng(8)
    for i in range(2000):
        monitor.observe(f"client-{i % 50}", int(rng.integers(5)), 0.2)
    assert monitor.n_clients == 8
    sizes = {monitor.state_size(f"client-{i}") for i in range(50)}
    # forgotten, or one window of flags and the CUSUM's six numbers (S, the last S, its count,
    # alarms, the last alarm and the last shared-log entry applied)
    assert sizes == {0, 50 + 6}
    for _ in range(500):
        monitor.observe("client-49", 0, 0.2)
    assert monitor.state_size("client-49") == 56
    monitor.reset("client-49")
    assert monitor.state_size("client-49") == 0

    clock = FakeClock()
    budget = ComputeBudget(SlowdownPolicy(compute_per_s=1.0), clock=clock, max_clients=4)
    for i in range(100):
        clock.now += 0.5
        budget.charge(f"client-{i}", 1.0)
    assert budget.n_clients == 4


@pytest.mark.parametrize(
    ("exit_index", "compute", "message"),
    [
        (0, 0.0, r"compute fraction must be in \(0, 1\], got 0.0"),
        (0, 1.5, r"compute fraction must be in \(0, 1\], got 1.5"),
        (0, -0.2, r"compute fraction must be in \(0, 1\]"),
        (0, math.nan, r"compute fraction must be in \(0, 1\], got nan"),
        (-1, 0.2, r"exit index must be >= 0, got -1"),
        (1.0, 0.2, r"exit index must be an integer, got 1.0"),
        (True, 0.2, r"exit index must be an integer, got True"),
        (5, 1.0, r"exit index must be below n_exits=5, got 5"),
    ],
)
def test_bad_answers_raise_data_error(exit_index: int, compute: float, message: str) -> None:
    monitor = fitted("five-exits", n_exits=5)
    with pytest.raises(DataError, match=message):
        monitor.observe("c", exit_index, compute)
    assert monitor.n_clients == 0  # nothing was recorded


def test_bad_fits_and_parameters_raise() -> None:
    with pytest.raises(DataError, match="call fit"):
        ExitMonitor().observe("c", 0, 0.2)
    with pytest.raises(DataError, match="at least 100 clean answers, got 10"):
        ExitMonitor().fit(np.full(10, 0.2))
    with pytest.raises(DataError, match=r"must be in \(0, 1\], got values from 0.2 to 1.2"):
        ExitMonitor().fit(np.r_[np.full(200, 0.2), 1.2])
    with pytest.raises(ValueError, match="late must be in"):
        ExitMonitor(late=0.0)
    with pytest.raises(ValueError, match="cusum_h must be > 0"):
        ExitMonitor(cusum_h=0.0)
    with pytest.raises(ValueError, match="min_queries"):
        ExitMonitor(window=10, min_queries=20)
    with pytest.raises(DataError, match=r"must be finite and >= 0, got -1\.0"):
        ComputeBudget().charge("c", -1.0)
    with pytest.raises(DataError, match="exit_probs must be non-negative and sum to 1"):
        simulate_streams([0.5, 0.4], 10)


def test_simulate_streams_follows_the_given_probabilities() -> None:
    probs, compute = SIX
    streams = simulate_streams(probs, 20_000, 100, compute=compute, seed=9)
    clean = streams.exits[0, :20_000]
    np.testing.assert_allclose(np.bincount(clean, minlength=6) / 20_000, probs, atol=0.01)
    assert not streams.attack[0, :20_000].any() and streams.attack[0, 20_000:].all()
    assert (streams.exits[0, 20_000:] == 5).all() and (streams.compute[0, 20_000:] == 1.0).all()
    np.testing.assert_array_equal(streams.compute[0], np.asarray(compute)[streams.exits[0]])
    again = simulate_streams(probs, 20_000, 100, compute=compute, seed=9)
    np.testing.assert_array_equal(streams.exits, again.exits)


# --------------------------------------------------------------------------- compute budget


def test_cap_while_alarmed_and_for_the_hold_time_only() -> None:
    clock = FakeClock()
    budget = ComputeBudget(SlowdownPolicy(max_exit_when_alarmed=1, alarm_hold_s=30), clock=clock)
    assert budget.cap_for("a") is None  # unknown client
    budget.charge("a", 1.0)
    assert budget.cap_for("a") is None  # no compute budget: spending alone never caps
    budget.flag("a")
    assert budget.cap_for("a") == 1 and budget.alarmed("a")
    assert budget.cap_for("b") is None
    clock.now += 29.9
    assert budget.cap_for("a") == 1
    clock.now += 0.1
    assert budget.cap_for("a") is None and not budget.alarmed("a")


def test_cap_while_over_the_compute_budget_in_the_sliding_window() -> None:
    clock = FakeClock(0.0)
    policy = SlowdownPolicy(compute_per_s=0.5, window_s=60.0, max_exit_when_alarmed=0)
    budget = ComputeBudget(policy, clock=clock, n_buckets=12)
    # 30 full passes in the first 30 s: exactly the budget (0.5/s over 60 s), not over it.
    for _ in range(30):
        rate = budget.charge("sloth", 1.0)
        clock.now += 1.0
    assert rate == pytest.approx(0.5)
    assert budget.cap_for("sloth") is None
    rate = budget.charge("sloth", 0.2)
    assert rate == pytest.approx(30.2 / 60) and budget.cap_for("sloth") == 0
    # A cheap client is never capped.
    for _ in range(100):
        budget.charge("thrifty", 0.2)
    assert budget.cap_for("thrifty") is None
    # Compute older than the window stops counting (to one 5 s bucket).
    clock.now = 30.0 + 60.0
    assert budget.rate("sloth") < 0.5 and budget.cap_for("sloth") is None
    clock.now = 30.0 + 65.0
    assert budget.rate("sloth") == 0.0
    budget.reset("sloth")
    assert budget.n_clients == 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.floats(0.0, 1.0, allow_nan=False)),
        min_size=1,
        max_size=60,
    )
)
def test_rate_counts_the_window_to_within_one_bucket(charges: list[tuple[int, float]]) -> None:
    """Whatever the arrivals: every charge from the last window_s - width seconds counts,
    none from window_s seconds ago or earlier does."""
    clock = FakeClock(0.0)
    budget = ComputeBudget(SlowdownPolicy(window_s=60.0), clock=clock, n_buckets=12)
    history: list[tuple[float, float]] = []
    for half_seconds, compute in charges:
        clock.now += half_seconds / 2  # on a half-second grid: bucket edges are exact
        history.append((clock.now, compute))
        budget.charge("c", compute)
    now = clock.now
    low = sum(c for t, c in history if now - t < 55.0) / 60.0
    high = sum(c for t, c in history if now - t < 60.0) / 60.0
    assert low - 1e-9 <= budget.rate("c") <= high + 1e-9
