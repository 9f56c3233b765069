"""Detectors that count a client's flagged queries in a window: near the decision boundary,
off the data manifold, or rare column by column; each alarms on the binomial window test of
:class:`~mlwarden.serve._windows.WindowTest`."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlwarden.errors import DataError, ParameterError
from mlwarden.serve._extraction._protocol import BenignTraffic, Pattern, encoded_row
from mlwarden.serve._extraction._stats import top_margin
from mlwarden.serve._state_calls import Steps, drive
from mlwarden.serve._verdict import Verdict
from mlwarden.serve._windows import WindowTest

if TYPE_CHECKING:
    from mlwarden.serve._state import GuardState

__all__ = ["BoundaryDetector", "OffManifoldDetector", "RarityDetector"]

FloatArray = NDArray[np.float64]


class _CountingDetector(ABC):
    """What the detectors that count flagged queries in a client's window share."""

    name: str
    _test: WindowTest

    @abstractmethod
    def _flag(self, x: ArrayLike | None, proba: ArrayLike | None) -> tuple[bool, str]:
        """Whether one query is flagged, and what a flag means (for the verdict's reason)."""

    def steps(self, client: str, x: ArrayLike | None, proba: ArrayLike | None) -> Steps[Verdict]:
        """Flag one query of ``client`` now; the steps then push the flag and test the window
        (:func:`~mlwarden.serve._state.drive_all` runs a suite's steps side by side)."""
        flag, what = self._flag(x, proba)
        return self._test.push_steps(client, flag, what)

    def observe(self, client: str, x: ArrayLike | None, proba: ArrayLike | None = None) -> Verdict:
        """Record one query of ``client`` and test its window."""
        return drive(self.steps(client, x, proba))

    def observe_answer(self, client: str, x: ArrayLike, proba: ArrayLike) -> Verdict:
        """:meth:`observe`, in the :class:`Detector` call shape."""
        return self.observe(client, x, proba)

    def share(self, state: GuardState) -> None:
        """Keep each client's window in ``state`` (shared by replicas when it is Redis)."""
        self._test.share(state)

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
        self.n_features_: int | None = None

    @property
    def benign_rate_(self) -> float | None:
        """Share of benign answers at or below the margin (None before :meth:`fit`)."""
        return self._test.rate

    catches: frozenset[Pattern] = frozenset({"boundary"})

    def fit(self, benign: BenignTraffic) -> Self:
        """Measure the benign rate of low-margin answers on the held-out rows' answers.

        Observed rows must then have the width of ``benign``'s feature space.
        """
        margins, self.n_features_ = top_margin(benign.proba), benign.space.n_features
        if len(margins) < 20:
            raise DataError(f"fit needs at least 20 benign answers, got {len(margins)}")
        cut = self.margin if self.margin is not None else float(np.quantile(margins, self.quantile))
        self.margin_ = cut
        # Laplace's rule keeps the rate off zero when no benign answer is that close.
        rate = (float(np.sum(margins <= cut)) + 1.0) / (len(margins) + 2.0)
        self._test.calibrate(rate)
        return self

    def _flag(self, x: ArrayLike | None, proba: ArrayLike | None) -> tuple[bool, str]:
        """Flagged when the answer's top margin is at most the benign cut; ``x`` is only
        checked (kept for a uniform call)."""
        if self.margin_ is None:
            raise DataError(f"{self.name}: call fit() with benign answers before observing")
        if proba is None:
            raise DataError(f"{self.name} judges answers: observe it with their probabilities")
        if x is not None and self.n_features_ is not None:
            encoded_row(x, self.n_features_)
        margin = float(top_margin(proba)[0])
        return margin <= self.margin_, f"at margin <= {self.margin_:.3g}"


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
        self._cut: tuple[float, float] | None = None  # (radius, squared cut)

    catches: frozenset[Pattern] = frozenset({"uniform"})

    def fit(self, benign: BenignTraffic) -> Self:
        """Keep a sample of the training rows; set the radius from held-out rows' k-NN distances."""
        rows, calib = benign.train, benign.held_out
        if len(rows) < self.k:
            raise DataError(f"fit needs at least k = {self.k} training rows, got {len(rows)}")
        if len(calib) < 100:
            raise DataError(f"fit needs at least 100 held-out rows, got {len(calib)}")
        if len(rows) > self.max_reference:
            pick = np.random.default_rng(self.seed).choice(len(rows), self.max_reference, False)
            rows = rows[np.sort(pick)]
        self.reference_ = rows
        self._norms = np.einsum("ij,ij->i", rows, rows)
        distances = np.concatenate(
            [self.distances(calib[i : i + 512]) for i in range(0, len(calib), 512)]
        )
        self.radius_ = float(np.quantile(distances, self.quantile))
        rate = (float(np.sum(distances > self.radius_)) + 1.0) / (len(distances) + 2.0)
        self._test.calibrate(max(rate, 1.0 - self.quantile))
        return self

    def distances(self, X: ArrayLike) -> FloatArray:
        """Distance of each encoded row to its k-th nearest training row."""
        kth = np.partition(self._squared(X), self.k - 1, axis=1)[:, self.k - 1]
        return np.asarray(np.sqrt(np.maximum(kth, 0.0)))

    def _squared(self, X: ArrayLike) -> FloatArray:
        """Squared distance of each encoded row to every training row kept, (n, reference)."""
        if self.reference_ is None or self._norms is None:
            raise DataError(f"{self.name}: call fit() before observing")
        rows = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if rows.shape[1] != self.reference_.shape[1]:
            raise DataError(
                f"expected encoded rows of {self.reference_.shape[1]} features, got {rows.shape[1]}"
            )
        return np.asarray(
            self._norms[None, :]
            - 2.0 * rows @ self.reference_.T
            + np.einsum("ij,ij->i", rows, rows)[:, None]
        )

    def beyond(self, X: ArrayLike) -> NDArray[np.bool_]:
        """Whether each row's :meth:`distances` exceeds the radius, without selecting the
        k-th distance: it does exactly when fewer than ``k`` training rows lie within the
        radius (the distance is monotone in the squared one, so both read the same order)."""
        within = self._squared(X) <= self._squared_cut()
        return np.asarray(np.count_nonzero(within, axis=1) < self.k)

    def _squared_cut(self) -> float:
        """The largest squared distance ``s`` with ``sqrt(max(s, 0)) <= radius_``: comparing
        squared distances with it decides as the distances themselves would."""
        radius = self.radius_
        assert radius is not None
        if self._cut is None or self._cut[0] != radius:
            cut = radius * radius
            if math.isfinite(cut):  # an infinite or NaN radius compares the same squared
                while cut > 0 and math.sqrt(cut) > radius:
                    cut = float(np.nextafter(cut, -np.inf))
                while math.sqrt(float(np.nextafter(cut, np.inf))) <= radius:
                    cut = float(np.nextafter(cut, np.inf))
            self._cut = (radius, cut)
        return self._cut[1]

    def _flag(self, x: ArrayLike | None, proba: ArrayLike | None) -> tuple[bool, str]:
        """Flagged beyond the k-NN radius of the training rows; ``proba`` is not used."""
        if x is None:
            raise DataError(f"{self.name} judges queries: observe it with the encoded row")
        flagged = bool(self.beyond(x)[0])
        assert self.radius_ is not None
        return flagged, f"beyond k-NN radius {self.radius_:.3g}"


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
        self._binned: _Bins | None = None
        self.n_features_: int | None = None
        self.threshold_: float | None = None

    catches: frozenset[Pattern] = frozenset({"uniform"})

    def fit(self, benign: BenignTraffic) -> Self:
        """Learn bin frequencies from the training rows and the threshold from held-out ones."""
        space, rows, calib = benign.space, benign.train, benign.held_out
        if len(rows) < 20 or len(calib) < 100:
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
        self._binned = _Bins.of(self._numeric, self._categorical)
        self.n_features_ = space.n_features
        scores = self.surprise(calib)
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
        if self._binned is not None:
            return self._binned.surprise(rows)
        total = np.zeros(len(rows))
        for j, edges, log_p in self._numeric:
            total -= log_p[np.searchsorted(edges, rows[:, j], side="right")]
        for where, log_p in self._categorical:
            total -= log_p[self._category(rows[:, where])]
        return total

    def _flag(self, x: ArrayLike | None, proba: ArrayLike | None) -> tuple[bool, str]:
        """Flagged when the row's surprise is above the benign cut; ``proba`` is not used."""
        if x is None:
            raise DataError(f"{self.name} judges queries: observe it with the encoded row")
        score = float(self.surprise(x)[0])
        assert self.threshold_ is not None
        return score > self.threshold_, f"with surprise above {self.threshold_:.3g}"


class _Bins:
    """Every column's bins as padded matrices, so that a query is binned and scored in a few
    array operations instead of one ``searchsorted`` (or arg-max) per column: the same bins
    and the same sum (accumulated column by column, numeric columns first) as the loop."""

    _CHUNK = 1024  # rows binned at once: bounds the (rows, columns, edges) comparison

    def __init__(
        self,
        numeric: list[tuple[int, FloatArray, FloatArray]],
        categorical: list[tuple[slice, FloatArray]],
    ) -> None:
        width = max((len(edges) for _, edges, _ in numeric), default=0)
        self.columns = np.asarray([j for j, _, _ in numeric], dtype=np.intp)
        self.edges = np.full((len(numeric), width), np.inf)  # padded with +inf
        self.lengths = np.asarray([len(edges) for _, edges, _ in numeric], dtype=np.intp)
        # each categorical block's columns, padded with the index of an extra -inf column
        blocks = max((w.stop - w.start for w, _ in categorical), default=0)
        self.blocks = np.full((len(categorical), blocks), -1, dtype=np.intp)
        most = max([width + 1, blocks + 1])
        self.log_p = np.zeros((len(numeric) + len(categorical), most))  # padded with 0
        for i, (_, edges, log_p) in enumerate(numeric):
            self.edges[i, : len(edges)] = edges
            self.log_p[i, : len(log_p)] = log_p
        for i, (where, log_p) in enumerate(categorical):
            self.blocks[i, : where.stop - where.start] = np.arange(where.start, where.stop)
            self.log_p[len(numeric) + i, : len(log_p)] = log_p
        self.offsets = np.arange(len(self.log_p)) * most
        self.flat_log_p = self.log_p.ravel()

    @classmethod
    def of(
        cls,
        numeric: list[tuple[int, FloatArray, FloatArray]],
        categorical: list[tuple[slice, FloatArray]],
    ) -> _Bins | None:
        """The padded bins, or None when some edges are not sorted and finite or a block is
        empty: only the loop itself gives the loop's bins then."""
        if not numeric and not categorical:
            return None
        if any(not np.all(np.isfinite(e)) or np.any(np.diff(e) < 0) for _, e, _ in numeric):
            return None
        if any(w.stop <= w.start for w, _ in categorical):
            return None
        return cls(numeric, categorical)

    def surprise(self, rows: FloatArray) -> FloatArray:
        """``-sum log p(bin)`` over the columns, per row."""
        parts = [np.zeros(0)]
        for start in range(0, len(rows), self._CHUNK):
            chunk = rows[start : start + self._CHUNK]
            values = chunk[:, self.columns]
            # edges not above the value: searchsorted(side="right") on sorted edges. Written
            # as "not below" so a NaN (which sorts after every edge) counts them all; the
            # +inf padding counts for NaN and +inf too, hence the clip at each column's edges.
            numeric = np.sum(~(values[:, :, None] < self.edges[None, :, :]), axis=2)
            numeric = np.minimum(numeric, self.lengths[None, :])
            categorical = np.zeros((len(chunk), len(self.blocks)), dtype=np.intp)
            if len(self.blocks):
                padded = np.concatenate([chunk, np.full((len(chunk), 1), -np.inf)], axis=1)
                block = padded[:, self.blocks]  # (rows, blocks, most categories)
                # RarityDetector._category: 0 for unknown or missing, else 1 + the arg-max
                categorical = np.where(block.max(axis=2) > 0, block.argmax(axis=2) + 1, 0)
            bins = np.concatenate([numeric, categorical], axis=1)
            scores = self.flat_log_p[bins + self.offsets[None, :]]
            # -(a1 + a2 + ...) summed left to right is the loop's 0 - a1 - a2 - ... exactly
            parts.append(-np.add.accumulate(scores, axis=1)[:, -1])
        return np.concatenate(parts)
