"""Per-client model-extraction detectors for the guarded model server.

Each detector watches one client's stream of queries (rows already encoded by a
:class:`~mlwarden.serve._features.FeatureSpace`) and the model's answers, and returns a
:class:`Verdict` per query. State is bounded: at most ``max_clients`` clients are tracked (the
least recently seen is forgotten first) and each keeps fixed-size ring buffers.

* :class:`PradaDetector` follows Mika Juuti, Sebastian Szyller, Samuel Marchal, N. Asokan,
  "PRADA: Protecting Against DNN Model Stealing Attacks", IEEE EuroS&P 2019, Algorithm 1:
  the minimum L2 distances between a client's successive queries (per predicted class, to
  the class's "growing set") are close to normally distributed for natural queries; synthetic
  attack queries make them deviate, caught by a Shapiro-Wilk statistic below ``delta``.
* :class:`BoundaryDetector` counts queries answered with a small top-1 margin: distillation
  and active-learning thieves probe near the decision boundary or uniformly over the input
  space, both of which land far more queries at low margin than natural traffic (Tramèr et
  al., USENIX Security 2016, §5; Orekondy et al., CVPR 2019).
* :class:`OffManifoldDetector` counts queries far from every training row (the distance to
  the k-th nearest one above the held-out 99th percentile): uniform and equation-solving
  queries (Tramèr et al. §4) are off the data manifold, which PRADA does not look at.

The two counting detectors apply a one-sided binomial test to the client's last ``window``
queries against the rate measured on benign held-out rows. :class:`DetectorSuite` raises an
alarm when any of its detectors does. :func:`detection_delay` and
:func:`false_positive_rate` evaluate detectors on recorded streams.

* :class:`RarityDetector` counts queries whose values are rare column by column (naive
  marginal surprise): equation-solving queries hold reference categories and off-grid
  numbers near the median, close to the data in L2 but unlike any natural row.

Measured on phishing and adult (bench/detect.py): uniform distillation is caught at the
first test (query 10) by the off-manifold and rarity detectors, equation solving (24 and 98
queries) at query 10 by the rarity detector; PRADA catches neither (uniform rows in many
dimensions have near-normal distances, equation solving ends before 30 distances) but does
catch perturbation-based synthetic queries (Papernot et al.'s Jacobian augmentation, the
paper's target). Queries from the data distribution itself (a thief with public data of the
same domain) look benign to every signal here; the PRADA paper reports the same limit for
natural queries, and only query volume (rate limits) bounds that thief.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlwarden.errors import DataError, ParameterError
from mlwarden.serve._verdict import Verdict
from mlwarden.serve._windows import Clients, WindowTest

if TYPE_CHECKING:
    from mlwarden.serve._features import FeatureSpace

__all__ = [
    "BoundaryDetector",
    "Detector",
    "DetectorSuite",
    "OffManifoldDetector",
    "PradaDetector",
    "RarityDetector",
    "Stream",
    "Verdict",
    "detection_delay",
    "false_positive_rate",
    "shapiro_w",
    "top_margin",
]

FloatArray = NDArray[np.float64]
Stream = Iterable[tuple[ArrayLike, ArrayLike]]
"""A client's queries as (encoded row, answered probabilities) pairs, in arrival order."""


@runtime_checkable
class Detector(Protocol):
    """What the server and the evaluation helpers need from a detector."""

    name: str

    def observe_answer(self, client: str, x: ArrayLike, proba: ArrayLike) -> Verdict:
        """Record one query ``x`` (encoded) and the model's probabilities; judge the client."""
        ...

    def reset(self, client: str) -> None:
        """Forget everything about ``client``."""
        ...


def _vector(x: ArrayLike, n_features: int | None) -> FloatArray:
    vector = np.asarray(x, dtype=np.float64).reshape(-1)
    if n_features is not None and vector.shape[0] != n_features:
        raise DataError(f"expected an encoded row of {n_features} features, got {vector.shape[0]}")
    return vector


def top_margin(proba: ArrayLike) -> FloatArray:
    """Top-1 minus top-2 probability, per row (1.0 for a single-class answer).

    Parameters
    ----------
    proba : array of shape (k,) or (n, k)

    Returns
    -------
    ndarray of shape (n,)
    """
    p = np.atleast_2d(np.asarray(proba, dtype=np.float64))
    if p.shape[1] < 2:
        return np.ones(p.shape[0])
    top2 = -np.partition(-p, 1, axis=1)[:, :2]
    return np.asarray(top2[:, 0] - top2[:, 1])


# --------------------------------------------------------------------------- Shapiro-Wilk


@lru_cache(maxsize=64)
def _shapiro_coefficients(n: int) -> FloatArray:
    """Royston's (1992, AS R94) approximate Shapiro-Wilk coefficients for ``n >= 6``."""
    from scipy.special import ndtri

    m = ndtri((np.arange(1, n + 1) - 0.375) / (n + 0.25))
    mm = float(m @ m)
    u = 1.0 / math.sqrt(n)
    c = m / math.sqrt(mm)
    a_n = c[-1] + np.polyval([-2.706056, 4.434685, -2.071190, -0.147981, 0.221157, 0.0], u)
    a_n1 = c[-2] + np.polyval([-3.582633, 5.682633, -1.752461, -0.293762, 0.042981, 0.0], u)
    phi = (mm - 2 * m[-1] ** 2 - 2 * m[-2] ** 2) / (1 - 2 * a_n**2 - 2 * a_n1**2)
    a = m / math.sqrt(phi)
    a[-1], a[-2], a[0], a[1] = a_n, a_n1, -a_n, -a_n1
    return np.asarray(a)


def shapiro_w(sample: ArrayLike) -> float:
    """The Shapiro-Wilk statistic W of a sample (1.0 for a sample without spread).

    The same statistic as :func:`scipy.stats.shapiro` (Royston's AS R94 coefficients), cached
    per sample size and without scipy's call overhead: about 20 µs for 1,000 values instead
    of about 170 µs, which matters once per request.

    Parameters
    ----------
    sample : array of at least 6 values

    Returns
    -------
    float
        W in (0, 1]; small values mean a non-normal sample.
    """
    y = np.sort(np.asarray(sample, dtype=np.float64).reshape(-1))
    n = len(y)
    if n < 6:
        raise ParameterError(f"the Shapiro-Wilk statistic needs at least 6 values, got {n}")
    centred = y - y.mean()
    ss = float(centred @ centred)
    if ss <= 1e-300 * n or y[-1] == y[0]:
        return 1.0
    numerator = float(_shapiro_coefficients(n) @ centred)
    return min(numerator * numerator / ss, 1.0)


# --------------------------------------------------------------------------- PRADA


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
    __slots__ = ("classes", "d_count", "d_head", "distances", "queries")

    def __init__(self, max_distances: int) -> None:
        self.classes: dict[Hashable, _GrowingSet] = {}
        self.distances = np.empty(max_distances)
        self.d_count = 0
        self.d_head = 0
        self.queries = 0

    def add_distance(self, d: float) -> None:
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

    ``__init__`` only stores and checks the parameters.

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
        self._clients: Clients[_PradaState] = Clients(
            lambda: _PradaState(max_distances), max_clients
        )

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
        key = predicted_class.item() if isinstance(predicted_class, np.generic) else predicted_class
        with self._clients.lock:
            state = self._clients.get(client)
            vector = _vector(x, self._width(state))
            norm = float(vector @ vector)
            state.queries += 1
            growing = state.classes.get(key)
            if growing is None:
                growing = _GrowingSet(self.max_per_class, len(vector))
                growing.add(vector, norm)
                state.classes[key] = growing
            else:
                distance = growing.min_distance(vector, norm)
                state.add_distance(distance)
                if distance > growing.threshold:
                    growing.add(vector, norm)
                    growing.join(distance)
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
            w = self._statistic(state.distances[:n])
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

    def observe_answer(self, client: str, x: ArrayLike, proba: ArrayLike) -> Verdict:
        """:meth:`observe` with the predicted class read from the probabilities (argmax)."""
        return self.observe(client, x, int(np.argmax(np.asarray(proba).reshape(-1))))

    @staticmethod
    def _width(state: _PradaState) -> int | None:
        for growing in state.classes.values():
            return int(growing.points.shape[1])
        return None

    @staticmethod
    def _statistic(distances: FloatArray) -> float:
        mean, std = float(distances.mean()), float(distances.std())
        kept = distances[np.abs(distances - mean) <= 3.0 * std] if std > 0 else distances
        return shapiro_w(kept) if len(kept) >= 6 else 1.0

    def statistic(self, client: str) -> float | None:
        """The client's current W (None before ``min_distances`` distances)."""
        state = self._clients.peek(client)
        if state is None or state.d_count < self.min_distances:
            return None
        return self._statistic(state.distances[: state.d_count])

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
        """Forget everything about ``client``."""
        self._clients.drop(client)


class _CountingDetector(ABC):
    """What the detectors that count flagged queries in a client's window share."""

    name: str
    _test: WindowTest

    @abstractmethod
    def observe(self, client: str, x: ArrayLike, proba: ArrayLike) -> Verdict:
        """Record one query of ``client`` and test its window."""

    def observe_answer(self, client: str, x: ArrayLike, proba: ArrayLike) -> Verdict:
        """:meth:`observe`, in the :class:`Detector` call shape."""
        return self.observe(client, x, proba)

    def state_size(self, client: str) -> int:
        """Stored flags for ``client`` (0 if unknown)."""
        return self._test.state_size(client)

    @property
    def n_clients(self) -> int:
        """Clients currently tracked."""
        return self._test.n_clients

    def reset(self, client: str) -> None:
        """Forget everything about ``client``."""
        self._test.reset(client)


class BoundaryDetector(_CountingDetector):
    """Too many queries answered near the decision boundary (small top-1 margin).

    A query is flagged when the model's top-1 minus top-2 probability is at most
    ``margin``. :meth:`fit` measures the benign share of flagged answers on held-out rows;
    an alarm is raised when the count in the client's last ``window`` queries is
    improbably high for that share: a one-sided binomial test at level ``alpha``, tested
    after every query once ``min_queries`` were seen (critical counts are precomputed, so a
    query costs O(1)).

    Parameters
    ----------
    margin : float, optional
        Margin at or below which an answer counts as near the boundary; default (None) the
        benign ``quantile`` of margins, set by :meth:`fit`.
    quantile : float
        Benign quantile used when ``margin`` is None (0.1: one benign answer in ten).
    window, min_queries : int
        Queries per test, and before the first test.
    alpha : float
        Level of each test. Tests repeat after every query on overlapping windows, so it is
        small: with 1e-5 no benign client of 10 of 500 held-out rows was ever alarmed on
        phishing or adult, by this detector or the other counting ones (bench/detect.py).
    max_clients : int
        Clients tracked (least recently seen forgotten first); each keeps ``window`` flags.
    name : str
        The detector's name in verdicts.
    """

    def __init__(
        self,
        margin: float | None = None,
        *,
        quantile: float = 0.1,
        window: int = 100,
        min_queries: int = 20,
        alpha: float = 1e-5,
        max_clients: int = 4096,
        name: str = "boundary",
    ) -> None:
        if margin is not None and not 0.0 <= margin <= 1.0:
            raise ParameterError(f"margin must be in [0, 1], got {margin}")
        if not 0.0 < quantile < 1.0:
            raise ParameterError(f"quantile must be in (0, 1), got {quantile}")
        self.margin = margin
        self.quantile = quantile
        self.name = name
        self._test = WindowTest(name, window, min_queries, alpha, max_clients)
        self.margin_: float | None = None

    @property
    def benign_rate_(self) -> float | None:
        """Share of benign answers at or below the margin (None before :meth:`fit`)."""
        return self._test.rate

    def fit(self, benign_proba: ArrayLike) -> BoundaryDetector:
        """Measure the benign rate of low-margin answers.

        Parameters
        ----------
        benign_proba : array of shape (n, k), or margins of shape (n,)
            The model's probabilities (or top-1 margins) on held-out benign rows.
        """
        values = np.asarray(benign_proba, dtype=np.float64)
        margins = values if values.ndim == 1 else top_margin(values)
        if len(margins) < 20:
            raise DataError(f"fit needs at least 20 benign answers, got {len(margins)}")
        cut = self.margin if self.margin is not None else float(np.quantile(margins, self.quantile))
        self.margin_ = cut
        # Laplace's rule keeps the rate off zero when no benign answer is that close.
        rate = (float(np.sum(margins <= cut)) + 1.0) / (len(margins) + 2.0)
        self._test.calibrate(rate)
        return self

    def observe(self, client: str, x: ArrayLike | None, proba: ArrayLike) -> Verdict:
        """Record one answer of ``client``; ``x`` is not used (kept for a uniform call)."""
        if self.margin_ is None:
            raise DataError(f"{self.name}: call fit() with benign answers before observing")
        margin = float(top_margin(proba)[0])
        return self._test.push(client, margin <= self.margin_, f"at margin <= {self.margin_:.3g}")


class OffManifoldDetector(_CountingDetector):
    """Too many queries far from every training row.

    A query is flagged when its L2 distance (in the feature space) to its ``k``-th nearest
    row of a training sample exceeds the ``quantile`` of the same distance over held-out
    rows, so benign queries are flagged at rate about ``1 - quantile``. The alarm is the
    one-sided binomial test of :class:`BoundaryDetector` on the client's last ``window``
    queries.

    Parameters
    ----------
    k : int
        Which nearest neighbour (k > 1 ignores duplicates of a single training row).
    quantile : float
        Held-out quantile of the k-NN distance above which a query counts as off-manifold.
    max_reference : int
        Training rows kept (a random sample): the per-query cost is one product with them.
    window, min_queries, alpha, max_clients, name
        As in :class:`BoundaryDetector`; ``min_queries`` is 10 because off-manifold
        attacks (equation solving) may need only a few dozen queries.
    seed : int
        Seed of the training sample.
    """

    def __init__(
        self,
        *,
        k: int = 5,
        quantile: float = 0.99,
        max_reference: int = 2000,
        window: int = 100,
        min_queries: int = 10,
        alpha: float = 1e-5,
        max_clients: int = 4096,
        seed: int = 0,
        name: str = "off_manifold",
    ) -> None:
        if k < 1:
            raise ParameterError(f"k must be >= 1, got {k}")
        if not 0.5 <= quantile < 1.0:
            raise ParameterError(f"quantile must be in [0.5, 1), got {quantile}")
        if max_reference < k:
            raise ParameterError(f"max_reference must be >= k, got {max_reference}")
        self.k = k
        self.quantile = quantile
        self.max_reference = max_reference
        self.seed = seed
        self.name = name
        self._test = WindowTest(name, window, min_queries, alpha, max_clients)
        self.reference_: FloatArray | None = None
        self._norms: FloatArray | None = None
        self.radius_: float | None = None

    def fit(self, train: ArrayLike, held_out: ArrayLike) -> OffManifoldDetector:
        """Keep a training sample and set the radius from held-out rows' k-NN distances.

        Parameters
        ----------
        train : array of shape (n, d)
            Encoded training rows (a sample of ``max_reference`` is kept).
        held_out : array of shape (m, d)
            Encoded benign rows the model never saw, at least 100.
        """
        rows = np.asarray(train, dtype=np.float64)
        benign = np.asarray(held_out, dtype=np.float64)
        if rows.ndim != 2 or benign.ndim != 2 or rows.shape[1] != benign.shape[1]:
            raise DataError("train and held_out must be matrices with the same columns")
        if len(rows) < self.k:
            raise DataError(f"fit needs at least k = {self.k} training rows, got {len(rows)}")
        if len(benign) < 100:
            raise DataError(f"fit needs at least 100 held-out rows, got {len(benign)}")
        if len(rows) > self.max_reference:
            pick = np.random.default_rng(self.seed).choice(len(rows), self.max_reference, False)
            rows = rows[np.sort(pick)]
        self.reference_ = rows
        self._norms = np.einsum("ij,ij->i", rows, rows)
        distances = np.concatenate(
            [self.distances(benign[i : i + 512]) for i in range(0, len(benign), 512)]
        )
        self.radius_ = float(np.quantile(distances, self.quantile))
        rate = (float(np.sum(distances > self.radius_)) + 1.0) / (len(distances) + 2.0)
        self._test.calibrate(max(rate, 1.0 - self.quantile))
        return self

    def distances(self, X: ArrayLike) -> FloatArray:
        """Distance of each encoded row to its k-th nearest training row."""
        if self.reference_ is None or self._norms is None:
            raise DataError(f"{self.name}: call fit() before observing")
        rows = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if rows.shape[1] != self.reference_.shape[1]:
            raise DataError(
                f"expected encoded rows of {self.reference_.shape[1]} features, got {rows.shape[1]}"
            )
        squared = (
            self._norms[None, :]
            - 2.0 * rows @ self.reference_.T
            + np.einsum("ij,ij->i", rows, rows)[:, None]
        )
        kth = np.partition(squared, self.k - 1, axis=1)[:, self.k - 1]
        return np.asarray(np.sqrt(np.maximum(kth, 0.0)))

    def observe(self, client: str, x: ArrayLike, proba: ArrayLike | None = None) -> Verdict:
        """Record one encoded query of ``client``; ``proba`` is not used."""
        distance = float(self.distances(x)[0])
        assert self.radius_ is not None
        return self._test.push(
            client, distance > self.radius_, f"beyond k-NN radius {self.radius_:.3g}"
        )


class RarityDetector(_CountingDetector):
    """Too many queries made of values that are rare column by column.

    Each column of the encoded row is binned: a categorical column by its category (unknown
    and missing share one bin), a numeric column with at most ``max_levels`` distinct training
    values by its exact value (any other value is an unseen bin), any other numeric column
    by ``n_bins`` equal-width bins between its 0.5 and 99.5 training percentiles plus two
    tails. A query's surprise is ``-sum log p(bin)`` over columns, the bin frequencies read
    from training rows (add-one-half smoothed). A query is flagged when its surprise exceeds
    the ``quantile`` of held-out rows' surprise; the alarm is the binomial window test of
    :class:`BoundaryDetector`.

    It complements :class:`OffManifoldDetector`: equation-solving queries (Tramèr et al.
    2016, §4.1.1) sit near the median in L2 but hold reference categories and non-grid
    numbers whose joint marginal rarity no natural row has.

    Parameters
    ----------
    quantile : float
        Held-out quantile of surprise above which a query is flagged.
    n_bins, max_levels : int
        Bins of a continuous column; most distinct values of a column binned exactly.
    window, min_queries, alpha, max_clients, name
        As in :class:`OffManifoldDetector`.
    """

    def __init__(
        self,
        *,
        quantile: float = 0.99,
        n_bins: int = 20,
        max_levels: int = 20,
        window: int = 100,
        min_queries: int = 10,
        alpha: float = 1e-5,
        max_clients: int = 4096,
        name: str = "rarity",
    ) -> None:
        if not 0.5 <= quantile < 1.0:
            raise ParameterError(f"quantile must be in [0.5, 1), got {quantile}")
        if n_bins < 1 or max_levels < 1:
            raise ParameterError(f"n_bins and max_levels must be >= 1, got {n_bins}, {max_levels}")
        self.quantile = quantile
        self.n_bins = n_bins
        self.max_levels = max_levels
        self.name = name
        self._test = WindowTest(name, window, min_queries, alpha, max_clients)
        self._numeric: list[tuple[int, FloatArray, FloatArray]] = []
        self._categorical: list[tuple[slice, FloatArray]] = []
        self.n_features_: int | None = None
        self.threshold_: float | None = None

    def fit(self, space: FeatureSpace, train: ArrayLike, held_out: ArrayLike) -> RarityDetector:
        """Learn bin frequencies from training rows and the threshold from held-out ones.

        Parameters
        ----------
        space : FeatureSpace
            The space the rows are encoded in (gives each column's slice).
        train, held_out : arrays of shape (n, space.n_features)
            Encoded training rows, and at least 100 encoded benign rows the model never saw.
        """
        rows = np.asarray(train, dtype=np.float64)
        benign = np.asarray(held_out, dtype=np.float64)
        width = space.n_features
        if rows.ndim != 2 or benign.ndim != 2 or {rows.shape[1], benign.shape[1]} != {width}:
            raise DataError(f"train and held_out must be matrices of {width} encoded features")
        if len(rows) < 20 or len(benign) < 100:
            raise DataError("fit needs at least 20 training and 100 held-out rows")
        self._numeric, self._categorical = [], []
        for _, where, is_numeric in space.blocks():
            values = rows[:, where]
            if is_numeric:
                column = values[:, 0]
                edges = self._edges(column)
                buckets = np.searchsorted(edges, column, side="right")
                counts = np.bincount(buckets, minlength=len(edges) + 1)
                self._numeric.append((where.start, edges, self._log_p(counts)))
            else:
                buckets = self._category(values)
                counts = np.bincount(buckets, minlength=values.shape[1] + 1)
                self._categorical.append((where, self._log_p(counts)))
        self.n_features_ = width
        scores = self.surprise(benign)
        self.threshold_ = float(np.quantile(scores, self.quantile))
        rate = (float(np.sum(scores > self.threshold_)) + 1.0) / (len(scores) + 2.0)
        self._test.calibrate(max(rate, 1.0 - self.quantile))
        return self

    def _edges(self, column: FloatArray) -> FloatArray:
        levels = np.unique(column)
        if len(levels) <= self.max_levels:
            eps = 1e-6 * np.maximum(1.0, np.abs(levels))
            return np.asarray(np.column_stack([levels - eps, levels + eps]).ravel())
        low, high = np.quantile(column, [0.005, 0.995])
        if high <= low:
            return np.asarray([low - 1e-6, low + 1e-6])
        return np.asarray(np.linspace(low, high, self.n_bins + 1))

    @staticmethod
    def _category(block: FloatArray) -> NDArray[np.int64]:
        """Bucket 0 for unknown or missing, else 1 + the category's position."""
        return np.where(block.max(axis=1) > 0, block.argmax(axis=1) + 1, 0).astype(np.int64)

    @staticmethod
    def _log_p(counts: NDArray[np.int64]) -> FloatArray:
        smoothed = counts + 0.5
        return np.asarray(np.log(smoothed / smoothed.sum()))

    def surprise(self, X: ArrayLike) -> FloatArray:
        """``-sum log p(bin)`` over columns, per encoded row."""
        if self.n_features_ is None:
            raise DataError(f"{self.name}: call fit() before observing")
        rows = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if rows.shape[1] != self.n_features_:
            raise DataError(
                f"expected encoded rows of {self.n_features_} features, got {rows.shape[1]}"
            )
        total = np.zeros(len(rows))
        for j, edges, log_p in self._numeric:
            total -= log_p[np.searchsorted(edges, rows[:, j], side="right")]
        for where, log_p in self._categorical:
            total -= log_p[self._category(rows[:, where])]
        return total

    def observe(self, client: str, x: ArrayLike, proba: ArrayLike | None = None) -> Verdict:
        """Record one encoded query of ``client``; ``proba`` is not used."""
        score = float(self.surprise(x)[0])
        assert self.threshold_ is not None
        return self._test.push(
            client, score > self.threshold_, f"with surprise above {self.threshold_:.3g}"
        )


# --------------------------------------------------------------------------- suite, evaluation


class DetectorSuite:
    """Several detectors as one: an alarm when any of them raises one.

    Parameters
    ----------
    detectors : sequence of Detector
        Each sees every query; their verdicts are kept in the suite verdict's ``parts``.
    name : str
        The suite's name in verdicts.
    """

    def __init__(self, detectors: Sequence[Detector], *, name: str = "suite") -> None:
        if not detectors:
            raise ParameterError("a DetectorSuite needs at least one detector")
        names = [d.name for d in detectors]
        if len(set(names)) != len(names):
            raise ParameterError(f"detector names must be distinct, got {names}")
        self.detectors = list(detectors)
        self.name = name

    def observe_answer(self, client: str, x: ArrayLike, proba: ArrayLike) -> Verdict:
        """Pass one query to every detector; alarm if any alarms."""
        parts = tuple(d.observe_answer(client, x, proba) for d in self.detectors)
        return Verdict.any_of(self.name, client, parts)

    observe = observe_answer

    def reset(self, client: str) -> None:
        """Forget ``client`` in every detector."""
        for detector in self.detectors:
            detector.reset(client)


_PROBE = "__mlwarden_evaluation__"


def detection_delay(detector: Detector, stream: Stream, *, client: str = _PROBE) -> int | None:
    """Queries of ``stream`` until ``detector`` first alarms (1-based), or None.

    The client starts from a clean state and is forgotten afterwards.

    Parameters
    ----------
    detector : Detector
    stream : iterable of (encoded row, probabilities) pairs
        E.g. ``zip(space.transform(rows), proba)``.
    client : str
        The client name used (pick one no real client has).
    """
    detector.reset(client)
    try:
        for i, (x, proba) in enumerate(stream, start=1):
            if detector.observe_answer(client, x, proba).alarm:
                return i
        return None
    finally:
        detector.reset(client)


def false_positive_rate(detector: Detector, benign_streams: Sequence[Stream]) -> float:
    """Share of benign streams (one client each) on which ``detector`` ever alarms.

    Parameters
    ----------
    detector : Detector
    benign_streams : sequence of streams
        One per benign client.
    """
    if not benign_streams:
        raise ParameterError("false_positive_rate needs at least one benign stream")
    alarmed = sum(
        detection_delay(detector, stream, client=f"{_PROBE}{i}") is not None
        for i, stream in enumerate(benign_streams)
    )
    return alarmed / len(benign_streams)
