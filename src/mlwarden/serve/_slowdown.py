"""The slowdown guard: per-client monitoring of early-exit answers, and a compute budget.

An early-exit (multi-exit) network answers each input from the first internal classifier
whose confidence reaches a threshold, so an answer carries an exit index ``e`` in
``0..K-1`` and a compute fraction ``c`` in (0, 1] (compute spent / the full network).
DeepSloth (Sanghyun Hong, Yiğitcan Kaya, Ionuţ-Vlad Modoranu, Tudor Dumitraş, "A Panda?
No, It's a Sloth: Slowdown Attacks on Adaptive Multi-Exit Neural Network Inference",
ICLR 2021) crafts inputs that no early exit is confident about, so a client sending them
drives its compute fraction to about 1 and erases the network's savings.

* :class:`ExitMonitor` watches each client's stream of (exit index, compute fraction) and
  raises an alarm on either of two tests, both fitted on clean held-out answers:

  - a one-sided binomial test on the client's last ``window`` answers: too many *late*
    answers (compute at or above ``late``, by default the last exit) for the benign rate
    (the window test of :mod:`mlwarden.serve._windows`, precomputed critical counts, O(1)
    per answer). It sees a client that mixes a share of attack inputs into clean traffic.
  - Page's CUSUM on the compute fraction (E. S. Page, "Continuous inspection schemes",
    Biometrika 41, 1954): ``S = max(0, S + c - (mean + k·std))``, an alarm when
    ``S > h·std``, then ``S = 0``. It reacts within a few answers to a client that sends
    only attack inputs, sooner than a window test can.

* :class:`ComputeBudget` applies :class:`SlowdownPolicy`: it accounts each client's compute
  (full-network passes) over a sliding time window and caps the exit index of a client that
  was alarmed recently or spends compute faster than its budget.
* :func:`simulate_streams` draws clean and attack exit streams for tests and benchmarks;
  :func:`exit_detection_delay` and :func:`exit_false_positive_rate` evaluate a monitor.

Calibration of the defaults (4 simulated clean distributions, 5 or 6 exits with 50 to 80 %
of inputs at the first and a decaying tail, 2 to 5 % at the last; each fitted on 2,000 and on
5,000 clean answers and run on 4 million clean answers): at most 0.003 alarms per 10,000
clean answers, all from the CUSUM (0.1 % of 4,000-answer clients alarmed in 2 of the 8 runs,
none in the others). A client switching from clean to attack inputs (compute 1) was caught
after 4 to 12 attack answers; one whose inputs exit at the last two exits after 4 to 17, both
by the CUSUM. Mixing attack inputs into clean traffic is the window test's case: at 25 % it
alarmed a median of 40 to 70 answers after the switch, at 10 % a median of 100 to 690 (96 to
100 % of clients within 3,000 answers), at 5 % it is unreliable (7 to 99 % within 3,000).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field

from mlwarden.errors import DataError, ParameterError
from mlwarden.serve._state_calls import drive
from mlwarden.serve._verdict import Verdict
from mlwarden.serve._windows import Clients, LogCodec, WindowTest, replay_steps

if TYPE_CHECKING:
    from mlwarden.serve._state import GuardState, QueryLog

__all__ = [
    "ComputeBudget",
    "ExitMonitor",
    "ExitStream",
    "SlowdownPolicy",
    "exit_detection_delay",
    "exit_false_positive_rate",
    "simulate_streams",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Compute fractions are ratios of FLOP counts; one at the cut-off but a rounding below it is late.
_TOLERANCE = 1e-9
# A clean sample whose compute barely varies would put h at 0: one late answer would alarm.
_MIN_STD = 0.05
_MIN_FIT = 100
_PROBE = "__mlwarden_slowdown_evaluation__"


def _compute_fraction(compute: float) -> float:
    value = float(compute)
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise DataError(f"a compute fraction must be in (0, 1], got {compute!r}")
    return value


def _exit_index(exit_index: int, n_exits: int | None) -> int:
    if isinstance(exit_index, bool) or not isinstance(exit_index, int | np.integer):
        raise DataError(f"an exit index must be an integer, got {exit_index!r}")
    index = int(exit_index)
    if index < 0:
        raise DataError(f"an exit index must be >= 0, got {index}")
    if n_exits is not None and index >= n_exits:
        raise DataError(f"an exit index must be below n_exits={n_exits}, got {index}")
    return index


class _Cusum:
    __slots__ = ("alarm", "alarms", "n", "s", "seen", "statistic")

    def __init__(self) -> None:
        self.s = 0.0
        self.n = 0
        self.alarms = 0
        self.alarm = False  # whether the last answer applied raised the alarm
        self.statistic = 0.0  # S after the last answer applied, before any reset
        self.seen = "0-0"  # the last shared-log entry applied


_FLOAT_CODEC = LogCodec(repr, float)


class ExitMonitor:
    """Alarms on clients whose early-exit answers come improbably late (slowdown attacks).

    :meth:`fit` learns clean traffic from compute fractions of held-out answers: their mean
    and spread (for the CUSUM) and the rate of late answers (for the window test).
    :meth:`observe` then judges one client after each answer; the alarm is raised when either
    test alarms. ``__init__`` only stores and checks the parameters.

    Parameters
    ----------
    late : float, optional
        Compute fraction at or above which an answer is late. Default (None): the largest
        clean compute fraction, i.e. the last exit, where DeepSloth inputs land. Pass a
        value when compute is measured rather than read per exit (a continuous fraction).
    window, min_queries : int
        Answers per window test, and answers before the first one.
    alpha : float
        Level of each window test. Tests repeat after every answer on overlapping windows,
        hence small; with 1e-6 it raised no alarm in 4 million clean answers of each
        calibration run (module docstring).
    cusum_k : float
        The CUSUM's allowance k, in clean standard deviations above the clean mean: answers
        cheaper than ``mean + k·std`` lower S. Page's choice for a shift of δ is k = δ/2;
        an attack moves the mean by 3 to 4 std, but a clean compute distribution has a long
        right tail (a late answer is 3 std above the mean), so k = 1 keeps clean S near 0
        while attack answers still add ``1 - mean - std`` each.
    cusum_h : float
        The CUSUM's decision threshold h, in clean standard deviations. 16 gave at most
        0.003 alarms per 10,000 clean answers (12 gave up to 0.02, 20 none, at 2 to 3 more
        answers of delay); the attack delay is about ``h·std / (1 - mean - k·std)`` answers
        (:attr:`cusum_delay_`), 6 to 12 for the calibration distributions. A clean mean
        near 1 leaves the CUSUM slow or silent (``cusum_delay_`` None) and the window test
        alone.
    n_exits : int, optional
        Number of exits; when given, larger exit indices are refused.
    max_clients : int
        Clients tracked; the least recently seen is forgotten first. Each keeps ``window``
        flags and three numbers.
    name : str
        The monitor's name in verdicts; its tests are ``{name}-late`` and ``{name}-cusum``.
    """

    def __init__(
        self,
        late: float | None = None,
        *,
        window: int = 100,
        min_queries: int = 20,
        alpha: float = 1e-6,
        cusum_k: float = 1.0,
        cusum_h: float = 16.0,
        n_exits: int | None = None,
        max_clients: int = 4096,
        name: str = "slowdown",
    ) -> None:
        if late is not None and not 0.0 < late <= 1.0:
            raise ParameterError(f"late must be in (0, 1], got {late}")
        if cusum_k < 0.0:
            raise ParameterError(f"cusum_k must be >= 0, got {cusum_k}")
        if cusum_h <= 0.0:
            raise ParameterError(f"cusum_h must be > 0, got {cusum_h}")
        if n_exits is not None and n_exits < 1:
            raise ParameterError(f"n_exits must be >= 1, got {n_exits}")
        self.late = late
        self.cusum_k = cusum_k
        self.cusum_h = cusum_h
        self.n_exits = n_exits
        self.name = name
        self._window = WindowTest(f"{name}-late", window, min_queries, alpha, max_clients)
        self._cusums: Clients[_Cusum] = Clients(_Cusum, max_clients)
        self._log: QueryLog | None = None
        self.mean_: float | None = None
        self.std_: float | None = None
        self.late_: float | None = None

    @property
    def late_rate_(self) -> float | None:
        """Clean share of late answers, Laplace-smoothed (None before :meth:`fit`)."""
        return self._window.rate

    @property
    def cusum_reference_(self) -> float | None:
        """``mean + k·std``: answers above it raise the CUSUM (None before :meth:`fit`)."""
        if self.mean_ is None or self.std_ is None:
            return None
        return self.mean_ + self.cusum_k * self.std_

    @property
    def cusum_threshold_(self) -> float | None:
        """``h·std``, the CUSUM's alarm level (None before :meth:`fit`)."""
        return None if self.std_ is None else self.cusum_h * self.std_

    @property
    def cusum_delay_(self) -> int | None:
        """Answers of compute 1 the CUSUM needs from S = 0 to alarm (None if it never does)."""
        reference, threshold = self.cusum_reference_, self.cusum_threshold_
        if reference is None or threshold is None or reference >= 1.0:
            return None
        return math.floor(threshold / (1.0 - reference)) + 1

    def fit(self, clean_compute: ArrayLike) -> ExitMonitor:
        """Learn clean traffic from the compute fractions of held-out answers.

        Parameters
        ----------
        clean_compute : array of shape (n,)
            Compute fractions in (0, 1] of at least 100 clean answers (several thousand
            estimate the rare late answers well).
        """
        values = np.asarray(clean_compute, dtype=np.float64).reshape(-1)
        if len(values) < _MIN_FIT:
            raise DataError(f"fit needs at least {_MIN_FIT} clean answers, got {len(values)}")
        if not (np.all(np.isfinite(values)) and values.min() > 0.0 and values.max() <= 1.0):
            raise DataError(
                "clean compute fractions must be in (0, 1], got values from "
                f"{values.min():.3g} to {values.max():.3g}"
            )
        self.mean_ = float(values.mean())
        # The floor keeps one late clean answer from alarming a near-constant stream.
        self.std_ = max(float(values.std()), _MIN_STD)
        cut = self.late if self.late is not None else float(values.max())
        self.late_ = cut
        # Laplace's rule keeps the rate off zero when no clean answer is that late.
        rate = (float(np.sum(values >= cut - _TOLERANCE)) + 1.0) / (len(values) + 2.0)
        self._window.calibrate(rate)
        return self

    def observe(self, client: str, exit_index: int, compute: float) -> Verdict:
        """Record one answer of ``client`` and judge the client.

        Parameters
        ----------
        client : str
            Who sent the input.
        exit_index : int
            The exit that answered, 0 for the first.
        compute : float
            The answer's compute fraction in (0, 1].

        Returns
        -------
        Verdict
            ``alarm`` if either test alarms; ``parts`` holds the window test's verdict
            (statistic: late answers in the window) and the CUSUM's (statistic: S).
        """
        if self.mean_ is None or self.late_ is None:
            raise DataError(f"{self.name}: call fit() with clean compute fractions first")
        index = _exit_index(exit_index, self.n_exits)
        value = _compute_fraction(compute)
        late = value >= self.late_ - _TOLERANCE
        parts = (
            self._window.push(client, late, f"late (compute >= {self.late_:.3g})"),
            self._cusum(client, value),
        )
        return Verdict.any_of(
            self.name, client, parts, f"no alarm (exit {index}, compute {value:.3g})"
        )

    def _cusum(self, client: str, value: float) -> Verdict:
        reference, threshold = self.cusum_reference_, self.cusum_threshold_
        assert reference is not None and threshold is not None

        def apply(state: _Cusum, answer: float) -> None:
            state.n += 1
            state.statistic = max(0.0, state.s + answer - reference)
            state.alarm = state.statistic > threshold
            state.s = 0.0 if state.alarm else state.statistic
            state.alarms += int(state.alarm)

        s, alarm, n = drive(
            replay_steps(
                self._cusums,
                self._log,
                client,
                value,
                apply,
                lambda state: (state.statistic, state.alarm, state.n),
                _FLOAT_CODEC,
            )
        )
        return Verdict(
            detector=f"{self.name}-cusum",
            client=client,
            alarm=alarm,
            statistic=s,
            threshold=threshold,
            n=n,
            reason=(
                f"CUSUM of compute above {reference:.3g} is {s:.3g} "
                f"{'>' if alarm else '<='} {threshold:.3g}" + (" (reset)" if alarm else "")
            ),
        )

    def share(self, state: GuardState) -> None:
        """Keep each client's window of late exits in ``state`` and replay its answers into
        the CUSUM from the state's log, so replicas sharing Redis judge as one."""
        self._window.share(state)
        self._log = state.query_log(f"{self.name}-cusum", 10_000)

    def state_size(self, client: str) -> int:
        """Stored values for ``client``: window flags and CUSUM numbers (0 if unknown)."""
        flags = self._window.state_size(client)
        return flags + (0 if self._cusums.peek(client) is None else len(_Cusum.__slots__))

    @property
    def n_clients(self) -> int:
        """Clients currently tracked."""
        return max(self._window.n_clients, len(self._cusums))

    def reset(self, client: str) -> None:
        """Forget everything about ``client``."""
        self._window.reset(client)
        self._cusums.drop(client)
        if self._log is not None:
            self._log.drop(client)


# --------------------------------------------------------------------------- compute budget


class SlowdownPolicy(BaseModel):
    """What the slowdown guard does to a client: the exit cap and the compute budget.

    ``max_exit_when_alarmed`` is the last exit a capped client may be answered from (0: the
    first); a client is capped for ``alarm_hold_s`` seconds after its last alarm, and while
    its compute over the last ``window_s`` seconds exceeds ``compute_per_s`` full-network
    passes per second (None: no budget).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_exit_when_alarmed: int = Field(default=0, ge=0)
    compute_per_s: float | None = Field(default=None, gt=0)
    window_s: float = Field(default=60.0, gt=0)
    alarm_hold_s: float = Field(default=300.0, ge=0)


class _Account:
    __slots__ = ("flagged_at", "ids", "sums")

    def __init__(self, n_buckets: int) -> None:
        self.sums = [0.0] * n_buckets
        self.ids = [-(2**62)] * n_buckets
        self.flagged_at: float | None = None


class ComputeBudget:
    """Per-client compute accounting over a sliding window, and the exit cap to impose.

    Compute is counted in full-network passes (an answer from the first of 5 equal exits
    costs 0.2) in ``n_buckets`` time buckets per client, so the window is exact to
    ``window_s / n_buckets`` seconds and a client costs O(``n_buckets``) memory whatever its
    request rate. Alarms are latched by :meth:`flag`: the window tests of
    :class:`ExitMonitor` fall silent once capped answers exit early, and the latch keeps the
    cap for ``alarm_hold_s`` seconds. Per request, a server calls ``cap_for`` before the
    forward pass, then ``charge`` with the compute spent, and ``flag`` when the monitor's
    verdict on the answer alarms. After the hold a persisting attacker is alarmed again
    within the monitor's delay, so it gets about that many full passes per hold period.

    Parameters
    ----------
    policy : SlowdownPolicy
    clock : callable
        Monotonic seconds; tests inject a fake one.
    n_buckets : int
        Buckets per window.
    max_clients : int
        Clients tracked, least recently seen forgotten first (with its latch and spending).
    """

    def __init__(
        self,
        policy: SlowdownPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        n_buckets: int = 12,
        max_clients: int = 4096,
    ) -> None:
        if n_buckets < 1:
            raise ParameterError(f"n_buckets must be >= 1, got {n_buckets}")
        self.policy = policy if policy is not None else SlowdownPolicy()
        self.clock = clock
        self.n_buckets = n_buckets
        self._width = self.policy.window_s / n_buckets
        self._clients: Clients[_Account] = Clients(lambda: _Account(n_buckets), max_clients)

    def _spent(self, account: _Account, bucket: int) -> float:
        oldest = bucket - self.n_buckets
        return sum(s for s, i in zip(account.sums, account.ids, strict=True) if i > oldest)

    def charge(self, client: str, compute: float) -> float:
        """Add ``compute`` full-network passes to ``client``; return its rate per second.

        Parameters
        ----------
        client : str
        compute : float
            Passes spent by one request, >= 0 (a batch may cost more than 1).
        """
        value = float(compute)
        if not (math.isfinite(value) and value >= 0.0):
            raise DataError(f"compute charged must be finite and >= 0, got {compute!r}")
        bucket = math.floor(self.clock() / self._width)
        slot = bucket % self.n_buckets
        with self._clients.lock:
            account = self._clients.get(client)
            if account.ids[slot] != bucket:
                account.ids[slot], account.sums[slot] = bucket, 0.0
            account.sums[slot] += value
            return self._spent(account, bucket) / self.policy.window_s

    def rate(self, client: str) -> float:
        """``client``'s compute over the window, in full-network passes per second."""
        bucket = math.floor(self.clock() / self._width)
        with self._clients.lock:
            account = self._clients.peek(client)
            return 0.0 if account is None else self._spent(account, bucket) / self.policy.window_s

    def flag(self, client: str) -> None:
        """Latch an alarm on ``client`` now (e.g. when :meth:`ExitMonitor.observe` alarms)."""
        now = self.clock()
        with self._clients.lock:
            self._clients.get(client).flagged_at = now

    def alarmed(self, client: str) -> bool:
        """Whether ``client`` was flagged within the last ``alarm_hold_s`` seconds."""
        with self._clients.lock:
            account = self._clients.peek(client)
            flagged_at = None if account is None else account.flagged_at
        return flagged_at is not None and self.clock() - flagged_at < self.policy.alarm_hold_s

    def cap_for(self, client: str) -> int | None:
        """The last exit ``client`` may be answered from, or None for no cap."""
        budget = self.policy.compute_per_s
        if self.alarmed(client) or (budget is not None and self.rate(client) > budget):
            return self.policy.max_exit_when_alarmed
        return None

    @property
    def n_clients(self) -> int:
        """Clients currently tracked."""
        return len(self._clients)

    def reset(self, client: str) -> None:
        """Forget ``client``'s spending and latch."""
        self._clients.drop(client)


# --------------------------------------------------------------------------- simulation, evaluation


class ExitStream(NamedTuple):
    """Simulated answers, one row per client: exits, compute fractions, attack flags."""

    exits: IntArray
    compute: FloatArray
    attack: NDArray[np.bool_]


def _probabilities(p: ArrayLike, what: str) -> FloatArray:
    probs = np.asarray(p, dtype=np.float64).reshape(-1)
    if len(probs) < 1 or np.any(probs < 0) or not math.isclose(probs.sum(), 1.0, abs_tol=1e-6):
        raise DataError(f"{what} must be non-negative and sum to 1, got {probs.tolist()}")
    return np.asarray(probs / probs.sum())


def simulate_streams(
    exit_probs: ArrayLike,
    n_clean: int,
    n_attack: int = 0,
    *,
    attack_probs: ArrayLike | None = None,
    attack_share: float = 1.0,
    compute: ArrayLike | None = None,
    n_streams: int = 1,
    seed: int | np.random.Generator | None = 0,
) -> ExitStream:
    """Draw clients' answers: ``n_clean`` clean ones, then ``n_attack`` from a mix.

    Parameters
    ----------
    exit_probs : array of shape (K,)
        Probability that a clean input exits at each exit.
    n_clean, n_attack : int
        Answers before and after the client switches.
    attack_probs : array of shape (K,), optional
        Exit probabilities of attack inputs; default all at the last exit (DeepSloth).
    attack_share : float
        Share of attack inputs after the switch (the rest clean), in [0, 1].
    compute : array of shape (K,), optional
        Compute fraction of each exit, increasing, the last 1; default ``(e + 1) / K``.
    n_streams : int
        Clients (rows).
    seed : int or Generator

    Returns
    -------
    ExitStream
        Arrays of shape (n_streams, n_clean + n_attack).
    """
    clean = _probabilities(exit_probs, "exit_probs")
    k = len(clean)
    attack = np.eye(k)[-1] if attack_probs is None else _probabilities(attack_probs, "attack_probs")
    if len(attack) != k:
        raise DataError(f"attack_probs has {len(attack)} exits, exit_probs {k}")
    costs = np.arange(1, k + 1) / k if compute is None else np.asarray(compute, dtype=np.float64)
    if costs.shape != (k,) or np.any(np.diff(costs) <= 0) or costs[0] <= 0 or costs[-1] != 1.0:
        raise DataError(f"compute must give {k} increasing fractions ending at 1, got {costs}")
    if not 0.0 <= attack_share <= 1.0:
        raise DataError(f"attack_share must be in [0, 1], got {attack_share}")
    if min(n_clean, n_attack) < 0 or n_streams < 1:
        raise DataError(
            "need n_clean, n_attack >= 0 and n_streams >= 1, got "
            f"{n_clean}, {n_attack} and {n_streams}"
        )
    rng = np.random.default_rng(seed)
    shape = (n_streams, n_clean + n_attack)
    is_attack = np.zeros(shape, dtype=np.bool_)
    is_attack[:, n_clean:] = rng.random((n_streams, n_attack)) < attack_share
    drawn = np.where(
        is_attack, rng.choice(k, size=shape, p=attack), rng.choice(k, size=shape, p=clean)
    )
    exits = drawn.astype(np.int64)
    return ExitStream(exits, np.asarray(costs[exits], dtype=np.float64), is_attack)


def exit_detection_delay(
    monitor: ExitMonitor, exits: ArrayLike, compute: ArrayLike, *, client: str = _PROBE
) -> int | None:
    """Answers of a stream until ``monitor`` first alarms (1-based), or None.

    The client starts from a clean state and is forgotten afterwards; for a stream that
    switches to attack inputs after ``n`` clean answers, ``delay - n`` answers were attack
    inputs (a value <= 0 is a false alarm).
    """
    exit_row = np.asarray(exits).reshape(-1)
    compute_row = np.asarray(compute, dtype=np.float64).reshape(-1)
    if exit_row.shape != compute_row.shape:
        raise DataError(f"{len(exit_row)} exits but {len(compute_row)} compute fractions")
    monitor.reset(client)
    try:
        for i, (e, c) in enumerate(zip(exit_row.tolist(), compute_row.tolist(), strict=True)):
            if monitor.observe(client, e, c).alarm:
                return i + 1
        return None
    finally:
        monitor.reset(client)


def exit_false_positive_rate(
    monitor: ExitMonitor, clean_streams: Sequence[tuple[ArrayLike, ArrayLike]]
) -> float:
    """Share of clean (exits, compute) streams, one client each, on which ``monitor`` alarms."""
    if not clean_streams:
        raise ParameterError("exit_false_positive_rate needs at least one clean stream")
    alarmed = sum(
        exit_detection_delay(monitor, e, c, client=f"{_PROBE}{i}") is not None
        for i, (e, c) in enumerate(clean_streams)
    )
    return alarmed / len(clean_streams)
