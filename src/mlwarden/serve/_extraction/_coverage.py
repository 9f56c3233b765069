"""Coverage-based extraction monitoring: how much of the model's decision regions a client has
explored (Kesarwani, Mukhoty, Arya, Mehta, "Model Extraction Warning in MLaaS Paradigm",
ACSAC 2018)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlwarden.errors import DataError, ParameterError
from mlwarden.serve._extraction._protocol import BenignTraffic, Pattern, encoded_row
from mlwarden.serve._state_calls import Steps, drive
from mlwarden.serve._verdict import Verdict
from mlwarden.serve._windows import Clients, LogCodec, replay_steps

if TYPE_CHECKING:
    from mlwarden.serve._state import GuardState, QueryLog

__all__ = ["CoverageDetector", "Partition"]

FloatArray = NDArray[np.float64]


class Partition(Protocol):
    """Anything that maps encoded rows to region ids, e.g. a fitted scikit-learn decision tree."""

    def apply(self, X: Any) -> Any:
        """The region (leaf) id of each row."""
        ...


class _Reached:
    """One client's regions reached, queries counted and information gained."""

    __slots__ = ("gain", "n", "reached", "seen")

    def __init__(self, n_regions: int) -> None:
        self.reached = np.zeros(n_regions, dtype=bool)
        self.n = 0
        self.gain = 0.0
        self.seen = "0-0"  # the last shared-log entry applied


_REGION_CODEC = LogCodec(str, int)


class CoverageDetector:
    """A client whose queries revealed more of the model's regions than a benign client could.

    The input space is cut into regions: the leaves of ``partition`` when given (a tree
    model's own decision regions), else ``n_regions`` k-means cells fitted on the training
    rows. Each region ``r`` has a mass ``p_r`` (its share of training rows). A client's
    *coverage* is the share of regions it has reached; its *information gain* is the share of
    the partition's entropy it has seen, ``sum_{r reached} -p_r log p_r / H``: a thief spreading
    its queries over regions gains it much faster than a client sampling natural traffic.

    :meth:`fit` simulates benign clients by drawing held-out rows at random (``n_simulations``
    streams of ``benign_queries``) and sets, for every query count ``n``, the threshold
    ``mean(n) + z * sd(n)`` of their information gain, ``z`` the largest standardised excess
    any simulated stream reached plus ``z_margin``. Past ``benign_queries`` the threshold
    stays at its last value: the information a benign client's volume reveals is the budget,
    so a thief drawing real rows is flagged once it has learnt more than that.

    Parameters
    ----------
    partition : Partition, optional
        Fitted object whose ``apply`` gives one region id per encoded row.
    n_regions : int
        k-means cells when ``partition`` is None.
    benign_queries : int
        Queries of a benign client (the volume whose information is allowed).
    n_simulations : int
        Simulated benign clients.
    z_margin : float
        Added to the simulated ``z``: the calibration rows are a sample of real traffic.
    min_queries : int
        Queries before the first test.
    max_clients : int
        Clients tracked (least recently seen forgotten first).
    seed : int
        Seed of k-means and of the simulation.
    name : str
        The detector's name in verdicts.
    """

    catches: frozenset[Pattern] = frozenset()

    def __init__(
        self,
        partition: Partition | None = None,
        *,
        n_regions: int = 256,
        benign_queries: int = 500,
        n_simulations: int = 400,
        z_margin: float = 1.0,
        min_queries: int = 20,
        max_clients: int = 4096,
        seed: int = 0,
        name: str = "coverage",
    ) -> None:
        if partition is not None and not callable(getattr(partition, "apply", None)):
            raise ParameterError("partition must have an apply(X) method giving region ids")
        for label, value, low in (
            ("n_regions", n_regions, 2),
            ("benign_queries", benign_queries, 1),
            ("n_simulations", n_simulations, 10),
            ("min_queries", min_queries, 1),
            ("max_clients", max_clients, 1),
        ):
            if value < low:
                raise ParameterError(f"{label} must be >= {low}, got {value}")
        if z_margin < 0:
            raise ParameterError(f"z_margin must be >= 0, got {z_margin}")
        self.partition = partition
        self.n_regions = n_regions
        self.benign_queries = benign_queries
        self.n_simulations = n_simulations
        self.z_margin = z_margin
        self.min_queries = min_queries
        self.max_clients = max_clients
        self.seed = seed
        self.name = name
        self.regions_: NDArray[Any] | None = None
        self.mass_: FloatArray | None = None
        self.weight_: FloatArray | None = None
        self.threshold_: FloatArray | None = None
        self.n_features_: int | None = None
        self._partition: Any = None
        self._clients: Clients[_Reached] = Clients(lambda: _Reached(0), max_clients)
        self._log: QueryLog | None = None

    def fit(self, benign: BenignTraffic) -> Self:
        """Fit the partition and region masses on training rows; simulate benign clients."""
        train, held_out = benign.train, benign.held_out
        if len(train) < 20 or len(held_out) < 20:
            raise DataError("fit needs at least 20 training and 20 held-out rows")
        self.n_features_ = benign.space.n_features
        if self.partition is not None:
            self._partition = self.partition
            tree = getattr(self.partition, "tree_", None)
            known = (
                np.flatnonzero(tree.children_left == -1)
                if tree is not None
                else np.unique(self._apply(np.vstack([train, held_out])))
            )
        else:
            from sklearn.cluster import KMeans

            k = min(self.n_regions, len(np.unique(train, axis=0)))
            self._partition = KMeans(k, n_init=1, random_state=self.seed).fit(train)
            known = np.arange(k)
        self.regions_ = np.sort(known)
        counts = np.bincount(self.region_index(train), minlength=len(self.regions_))
        self.mass_ = (counts + 0.5) / (counts.sum() + 0.5 * len(counts))
        self.weight_ = -self.mass_ * np.log(self.mass_)
        self.weight_ = self.weight_ / self.weight_.sum()
        self.threshold_ = self._benign_threshold(self.region_index(held_out))
        n_regions = len(self.regions_)
        self._clients = Clients(lambda: _Reached(n_regions), self.max_clients)
        return self

    def _apply(self, X: FloatArray) -> NDArray[Any]:
        if hasattr(self._partition, "cluster_centers_"):
            return np.asarray(self._partition.predict(X))
        ids = np.asarray(self._partition.apply(X))
        if ids.ndim != 1:
            raise DataError(f"partition.apply must give one region id per row, got {ids.shape}")
        return ids

    def region_index(self, X: ArrayLike) -> NDArray[np.intp]:
        """Position in ``regions_`` of each encoded row's region (unknown ids: DataError)."""
        if self.regions_ is None or self.n_features_ is None:
            raise DataError(f"{self.name}: call fit() before observing")
        rows = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if rows.shape[1] != self.n_features_:
            raise DataError(
                f"expected encoded rows of {self.n_features_} features, got {rows.shape[1]}"
            )
        ids = self._apply(rows)
        where = np.searchsorted(self.regions_, ids).clip(0, len(self.regions_) - 1)
        if np.any(self.regions_[where] != ids):
            raise DataError(
                f"partition gave region ids it did not give at fit: {set(ids.tolist())}"
            )
        return np.asarray(where, dtype=np.intp)

    def gain_curves(self, streams: NDArray[np.intp]) -> FloatArray:
        """Information gain after each query of each stream of region positions, (s, n)."""
        assert self.weight_ is not None
        s, n = streams.shape
        first = np.zeros((s, n), dtype=bool)
        seen = np.zeros((s, len(self.weight_)), dtype=bool)
        rows = np.arange(s)
        for j in range(n):
            first[:, j] = ~seen[rows, streams[:, j]]
            seen[rows, streams[:, j]] = True
        return np.asarray(np.cumsum(np.where(first, self.weight_[streams], 0.0), axis=1))

    def _benign_threshold(self, held_out: NDArray[np.intp]) -> FloatArray:
        """``mean + z * sd`` of simulated benign gain per query count (index n - 1)."""
        rng = np.random.default_rng(self.seed)
        draws = held_out[rng.integers(0, len(held_out), (self.n_simulations, self.benign_queries))]
        curves = self.gain_curves(draws)
        mean, sd = curves.mean(axis=0), np.maximum(curves.std(axis=0), 1e-6)
        tested = slice(self.min_queries - 1, None)
        z = float(((curves - mean) / sd)[:, tested].max()) if curves[:, tested].size else 0.0
        return np.asarray(np.minimum(mean + (z + self.z_margin) * sd, 1.0))

    def coverage(self, client: str) -> float:
        """Share of regions ``client`` has reached (0 if unknown)."""
        state = self._clients.peek(client)
        return float(state.reached.mean()) if state is not None else 0.0

    def information_gain(self, client: str) -> float:
        """Share of the partition's entropy ``client`` has seen (0 if unknown)."""
        state = self._clients.peek(client)
        return state.gain if state is not None else 0.0

    def _reach(self, state: _Reached, region: int) -> None:
        assert self.weight_ is not None
        if not state.reached[region]:
            state.reached[region] = True
            state.gain += float(self.weight_[region])
        state.n += 1

    def observe_answer(self, client: str, x: ArrayLike, proba: ArrayLike | None = None) -> Verdict:
        """Record one encoded query of ``client`` (``proba`` is not used); judge the client."""
        return drive(self.steps(client, x, proba))

    def steps(self, client: str, x: ArrayLike, proba: ArrayLike | None = None) -> Steps[Verdict]:
        """:meth:`observe_answer` as steps: the region is found now; the shared log's
        exchange is the call they wait for."""
        region = int(self.region_index(encoded_row(x, self.n_features_))[0])
        return self._judged(client, region)

    def _judged(self, client: str, region: int) -> Steps[Verdict]:
        assert self.weight_ is not None and self.threshold_ is not None
        n, gain, share = yield from replay_steps(
            self._clients,
            self._log,
            client,
            region,
            self._reach,
            lambda state: (state.n, state.gain, float(state.reached.mean())),
            _REGION_CODEC,
        )
        if n < self.min_queries:
            return Verdict(
                detector=self.name, client=client, alarm=False, statistic=gain,
                threshold=None, n=n, reason=f"fewer than {self.min_queries} queries",
            )  # fmt: skip
        limit = float(self.threshold_[min(n, len(self.threshold_)) - 1])
        alarm = gain > limit
        reason = (
            f"information gain {gain:.3f} above benign {limit:.3f} after {n} queries "
            f"({share:.0%} of regions)"
            if alarm
            else "coverage within benign range"
        )
        return Verdict(
            detector=self.name, client=client, alarm=alarm, statistic=gain,
            threshold=limit, n=n, reason=reason,
        )  # fmt: skip

    def share(self, state: GuardState) -> None:
        """Replay each client's regions from ``state``'s shared log (Redis), so replicas
        count one coverage per client; in-process state keeps its own."""
        self._log = state.query_log(self.name, 20_000)

    observe = observe_answer

    def reset(self, client: str) -> None:
        """Forget everything about ``client`` (in the shared log too)."""
        self._clients.drop(client)
        if self._log is not None:
            self._log.drop(client)
