"""PRADA (Juuti et al., EuroS&P 2019): a Shapiro-Wilk test on the minimum distances between a
client's successive queries, per predicted class."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Hashable
from typing import TYPE_CHECKING, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlwarden.errors import ParameterError
from mlwarden.serve._extraction._protocol import BenignTraffic, Pattern, encoded_row
from mlwarden.serve._extraction._stats import shapiro_w_sorted
from mlwarden.serve._state_calls import Steps, drive
from mlwarden.serve._verdict import Verdict
from mlwarden.serve._windows import Clients, LogCodec, replay_steps

if TYPE_CHECKING:
    from mlwarden.serve._state import GuardState, QueryLog

__all__ = ["PradaDetector"]

FloatArray = NDArray[np.float64]


class _GrowingSet:
    """One predicted class's growing set: a ring of points with cached squared norms, and the
    running mean and spread of the distances at which points joined (for the threshold)."""

    __slots__ = ("count", "head", "joined", "norms", "points", "sq_sum", "sum", "threshold")

    def __init__(self, capacity: int, n_features: int) -> None:
        self.points = np.empty((capacity, n_features))
        self.norms = np.empty(capacity)
        self.count = 0
        self.head = 0
        self.threshold = 0.0
        self.joined = 0
        self.sum = 0.0
        self.sq_sum = 0.0

    def add(self, x: FloatArray, norm: float) -> None:
        self.points[self.head] = x
        self.norms[self.head] = norm
        self.head = (self.head + 1) % len(self.points)
        self.count = min(self.count + 1, len(self.points))

    def min_distance(self, x: FloatArray, norm: float) -> float:
        k = self.count
        squared = self.norms[:k] - 2.0 * (self.points[:k] @ x) + norm
        return math.sqrt(max(float(squared.min()), 0.0))

    def join(self, distance: float) -> None:
        """Record a join distance and raise the threshold to max(T, mean - std)."""
        self.joined += 1
        self.sum += distance
        self.sq_sum += distance * distance
        mean = self.sum / self.joined
        std = math.sqrt(max(self.sq_sum / self.joined - mean * mean, 0.0))
        self.threshold = max(self.threshold, mean - std)


class _PradaState:
    """One client's growing sets and distance list D: a ring in arrival order, and the same
    values kept in ascending order as they arrive (one insertion and at most one removal per
    query), so the test never sorts D again."""

    __slots__ = ("classes", "d_count", "d_head", "distances", "queries", "seen", "sorted")

    def __init__(self, max_distances: int) -> None:
        self.classes: dict[Hashable, _GrowingSet] = {}
        self.distances = np.empty(max_distances)
        self.sorted = np.empty(max_distances)
        self.d_count = 0
        self.d_head = 0
        self.queries = 0
        self.seen = "0-0"  # the last shared-log entry applied

    def add_distance(self, d: float) -> None:
        n, ordered = self.d_count, self.sorted
        if n == len(self.distances):  # the ring overwrites its oldest value: drop it
            i = int(np.searchsorted(ordered[:n], self.distances[self.d_head]))
            ordered[i : n - 1] = ordered[i + 1 : n]
            n -= 1
        j = int(np.searchsorted(ordered[:n], d, side="right"))
        ordered[j + 1 : n + 1] = ordered[j:n]
        ordered[j] = d
        self.distances[self.d_head] = d
        self.d_head = (self.d_head + 1) % len(self.distances)
        self.d_count = min(self.d_count + 1, len(self.distances))


class PradaDetector:
    """PRADA: a Shapiro-Wilk test on a client's minimum query distances (Juuti et al. 2019).

    Per client and predicted class, a query's minimum L2 distance to the class's growing set
    goes into the client's distance list D; the query joins the growing set when that
    distance exceeds the class's threshold ``max(T, mean - std)`` of its join distances (the
    first query of a class starts the set and gives no distance). Once D holds
    ``min_distances`` values, values outside mean ± 3 std are dropped and the Shapiro-Wilk
    statistic W of the rest is compared with ``delta``: W < delta raises the alarm.

    ``__init__`` only stores and checks the parameters. PRADA needs no calibration: it may
    observe unfitted, and :meth:`fit` only fixes the width of the rows it accepts.

    Parameters
    ----------
    delta : float
        The paper's δ. The paper tunes it per model (0.87 to 0.96 for its image models);
        the default 0.70 is calibrated on tabular data (bench/detect.py): the lowest W seen
        over 10 benign clients of 500 held-out rows, after 30 distances, was 0.74 to 0.77
        on adult (numeric and one-hot columns) and 0.84 to 0.85 on phishing (23 columns in
        {-1, 0, 1}), for a logistic and a boosted model. Discrete features make many minimum
        distances tie, which lowers benign W well below the paper's image values;
        recalibrate δ for a new model with benign streams.
    min_distances : int
        Distances needed before testing (the paper tests from 100 on; 30 keeps benign W
        above δ here and reacts sooner).
    max_distances : int
        D keeps the last ``max_distances`` distances (at most 5,000, the range the
        statistic is defined for); the paper keeps all.
    max_per_class : int
        Growing-set points kept per class, a ring (the oldest point is overwritten), so
        distances are to the last ``max_per_class`` members.
    max_clients : int
        Clients tracked; the least recently seen is forgotten first. Memory is at most
        ``max_clients * (n_classes * max_per_class * (n_features + 1) + max_distances)``
        floats.
    name : str
        The detector's name in verdicts.
    """

    def __init__(
        self,
        delta: float = 0.70,
        *,
        min_distances: int = 30,
        max_distances: int = 1000,
        max_per_class: int = 256,
        max_clients: int = 1024,
        name: str = "prada",
    ) -> None:
        if not 0.0 < delta < 1.0:
            raise ParameterError(f"delta must be in (0, 1), got {delta}")
        if not 6 <= min_distances <= max_distances <= 5000:
            raise ParameterError(
                "need 6 <= min_distances <= max_distances <= 5000, got "
                f"{min_distances} and {max_distances}"
            )
        if max_per_class < 1:
            raise ParameterError(f"max_per_class must be >= 1, got {max_per_class}")
        self.delta = delta
        self.min_distances = min_distances
        self.max_distances = max_distances
        self.max_per_class = max_per_class
        self.name = name
        self.n_features_: int | None = None
        self._clients: Clients[_PradaState] = Clients(
            lambda: _PradaState(max_distances), max_clients
        )
        self._log: QueryLog | None = None

    catches: frozenset[Pattern] = frozenset({"perturbation"})

    def fit(self, benign: BenignTraffic) -> Self:
        """Accept only rows of ``benign.space``'s width from now on (nothing else to learn)."""
        self.n_features_ = benign.space.n_features
        return self

    def observe(self, client: str, x: ArrayLike, predicted_class: Hashable) -> Verdict:
        """Record one encoded query and the class the model predicted; judge the client.

        Parameters
        ----------
        client : str
            Who sent the query.
        x : array of shape (n_features,)
            The query in the feature space (all of a detector's queries share one).
        predicted_class : hashable
            The model's top-1 class (a label or its index).

        Returns
        -------
        Verdict
            ``statistic`` is W (None before ``min_distances`` distances), ``n`` = |D|.
        """
        return drive(self.class_steps(client, x, predicted_class))

    def class_steps(self, client: str, x: ArrayLike, predicted_class: Hashable) -> Steps[Verdict]:
        """:meth:`observe` as steps: the row is encoded now; the shared log's exchange is the
        call they wait for."""
        key = predicted_class.item() if isinstance(predicted_class, np.generic) else predicted_class
        with self._clients.lock:
            vector = encoded_row(x, self.n_features_ or self._width(self._clients.get(client)))
        if self._log is not None:  # what every replica replays: the row as the log holds it
            vector = vector.astype(np.float32).astype(np.float64)
        return replay_steps(
            self._clients,
            self._log,
            client,
            (key, vector),
            lambda state, query: self._apply(state, query[1], query[0]),
            lambda state: self._verdict(client, state),
            _CODEC,
        )

    def _apply(self, state: _PradaState, vector: FloatArray, key: Hashable) -> None:
        """One query's effect: its distance to its class's growing set, which it may join."""
        norm = float(vector @ vector)
        state.queries += 1
        growing = state.classes.get(key)
        if growing is None:
            growing = _GrowingSet(self.max_per_class, len(vector))
            growing.add(vector, norm)
            state.classes[key] = growing
            return
        distance = growing.min_distance(vector, norm)
        state.add_distance(distance)
        if distance > growing.threshold:
            growing.add(vector, norm)
            growing.join(distance)

    def _verdict(self, client: str, state: _PradaState) -> Verdict:
        n = state.d_count
        if n < self.min_distances:
            return Verdict(
                detector=self.name,
                client=client,
                alarm=False,
                statistic=None,
                threshold=None,
                n=n,
                reason=f"{n} of {self.min_distances} distances needed",
            )
        w = self._statistic(state.distances[:n], state.sorted[:n])
        alarm = w < self.delta
        return Verdict(
            detector=self.name,
            client=client,
            alarm=alarm,
            statistic=w,
            threshold=self.delta,
            n=n,
            reason=(
                f"Shapiro-Wilk W = {w:.3f} {'<' if alarm else '>='} δ = {self.delta} "
                f"over {n} query distances"
            ),
        )

    def share(self, state: GuardState) -> None:
        """Replay each client's queries from ``state``'s shared log (Redis), so replicas hold
        one growing set and one distance list per client; in-process state keeps its own."""
        self._log = state.query_log(self.name, 5 * self.max_distances)

    def observe_answer(self, client: str, x: ArrayLike, proba: ArrayLike) -> Verdict:
        """:meth:`observe` with the predicted class read from the probabilities (argmax)."""
        return drive(self.steps(client, x, proba))

    def steps(self, client: str, x: ArrayLike, proba: ArrayLike) -> Steps[Verdict]:
        """:meth:`observe_answer` as steps (see :meth:`class_steps`)."""
        return self.class_steps(client, x, int(np.argmax(np.asarray(proba).reshape(-1))))

    @staticmethod
    def _width(state: _PradaState) -> int | None:
        for growing in state.classes.values():
            return int(growing.points.shape[1])
        return None

    @staticmethod
    def _statistic(distances: FloatArray, ordered: FloatArray | None = None) -> float:
        """W of the distances without those beyond mean ± 3 std (mean and std of D in arrival
        order; the kept values read from ``ordered``, D in ascending order, sorted here when
        not given)."""
        if ordered is None:
            ordered = np.sort(distances)
        # numpy's own mean and std, without their Python wrappers: the same sums, bit for bit
        n = len(distances)
        mean = float(np.add.reduce(distances) / n)
        deviations = distances - mean
        std = float(np.sqrt(np.add.reduce(deviations * deviations) / n))
        kept = ordered[np.abs(ordered - mean) <= 3.0 * std] if std > 0 else ordered
        return shapiro_w_sorted(kept) if len(kept) >= 6 else 1.0

    def statistic(self, client: str) -> float | None:
        """The client's current W (None before ``min_distances`` distances)."""
        state = self._clients.peek(client)
        if state is None or state.d_count < self.min_distances:
            return None
        n = state.d_count
        return self._statistic(state.distances[:n], state.sorted[:n])

    def state_size(self, client: str) -> int:
        """Stored values for ``client``: growing-set points and distances (0 if unknown)."""
        state = self._clients.peek(client)
        if state is None:
            return 0
        return state.d_count + sum(g.count for g in state.classes.values())

    @property
    def n_clients(self) -> int:
        """Clients currently tracked."""
        return len(self._clients)

    def reset(self, client: str) -> None:
        """Forget everything about ``client`` (in the shared log too)."""
        self._clients.drop(client)
        if self._log is not None:
            self._log.drop(client)


def _encode(query: tuple[Hashable, FloatArray]) -> str:
    packed = base64.b64encode(query[1].astype(np.float32).tobytes()).decode("ascii")
    return json.dumps([query[0], packed])


def _decode(entry: str) -> tuple[Hashable, FloatArray]:
    key, packed = json.loads(entry)
    return key, np.frombuffer(base64.b64decode(packed), dtype=np.float32).astype(np.float64)


_CODEC = LogCodec(_encode, _decode)
