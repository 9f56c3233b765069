"""HopSkipJump's search, advanced for every point in lockstep: the decision oracle and the state.

Chen, Jordan, Wainwright, "HopSkipJumpAttack: A Query-Efficient Decision-Based Attack",
IEEE S&P 2020: per iteration, a Monte-Carlo estimate of the gradient direction at the
boundary, a geometric step along it, and a binary search back to the boundary; each point
holds to its share of the query budget through the :class:`Oracle`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from mlwarden.errors import ModelError, QueryBudgetExceeded
from mlwarden.models import ModelAdapter

Norm = Literal["l2", "linf"]
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

# Tolerance of the binary search along the blend of the original and the random starting point
# (as in the authors' code) before the norm's own boundary search.
_BLEND_TOL = 1e-3
# A geometric step search that halves this often without landing on the adversarial side gives
# up for this iteration; by then the step is far below any useful size.
_MAX_HALVINGS = 30
# The paper's binary-search threshold theta is coarse in few dimensions (35% at d=2 for L2);
# the search stops at the smaller of theta and this, which changes nothing from d=100 (L2) or
# d=32 (Linf) up. delta keeps the paper's theta.
_MAX_TOL = 1e-3
# Floats per predict call when Monte-Carlo samples of several points are batched together.
_ROWS_X_FEATURES = 1 << 22


class Oracle:
    """Asks the model for decisions on rows owned by points, holding each point to its share.

    A point whose share cannot pay for a request, or whose request the adapter refuses with
    ``QueryBudgetExceeded``, is cut: it is never queried again.
    """

    def __init__(
        self,
        model: ModelAdapter,
        labels: NDArray[Any],
        targeted: bool,
        shares: IntArray | None,
        columns: list[Any] | None,
    ) -> None:
        self.model = model
        self.labels = labels
        self.targeted = targeted
        self.left = shares.copy() if shares is not None else None
        self.spent = np.zeros(len(labels), dtype=np.int64)
        self.cut = np.zeros(len(labels), dtype=bool)
        self.columns = columns

    def room(self, point: int) -> int | None:
        """Rows ``point`` may still send (None: unlimited)."""
        if self.cut[point]:
            return 0
        return None if self.left is None else int(self.left[point])

    def _call(self, rows: FloatArray) -> NDArray[Any]:
        sent: Any = rows
        if self.columns is not None:
            import pandas as pd

            sent = pd.DataFrame(rows, columns=self.columns)
        out = np.asarray(self.model.predict(sent)).reshape(-1)
        if len(out) != len(rows):
            raise ModelError(f"predict returned {len(out)} labels for {len(rows)} rows")
        return out

    def predict(self, owner: IntArray, rows: FloatArray) -> tuple[NDArray[Any], BoolArray]:
        """Labels of ``rows`` (row ``j`` owned by point ``owner[j]``) and which were answered."""
        n = len(self.spent)
        counts = np.bincount(owner, minlength=n)
        asking = counts > 0
        unpaid = asking & self.cut
        if self.left is not None:
            unpaid |= asking & (self.left < counts)
        self.cut |= unpaid
        paying = asking & ~self.cut
        labels = np.empty(len(rows), dtype=object)
        answered = paying[owner]
        if not answered.any():
            return labels, answered
        try:
            labels[answered] = self._call(rows[answered])
        except QueryBudgetExceeded:
            # The adapter's own budget ran out first: retry point by point so that those
            # it can still afford are answered, and cut the rest.
            for p in np.flatnonzero(paying):
                mine = owner == p
                try:
                    labels[mine] = self._call(rows[mine])
                except QueryBudgetExceeded:
                    self.cut[p] = True
                    paying[p] = False
            answered = paying[owner]
        self.spent[paying] += counts[paying]
        if self.left is not None:
            self.left[paying] -= counts[paying]
        return labels, answered

    def decide(
        self, owner: IntArray, rows: FloatArray
    ) -> tuple[BoolArray, BoolArray, NDArray[Any]]:
        """Whether each row is adversarial for its owner, whether it was answered, its label."""
        labels, answered = self.predict(owner, rows)
        adv = np.zeros(len(rows), dtype=bool)
        if answered.any():
            got = labels[answered]
            want = self.labels[owner[answered]]
            hit = got == want if self.targeted else got != want
            adv[answered] = np.asarray(hit, dtype=bool)
        return adv, answered, labels


def _distance(a: FloatArray, b: FloatArray, norm: Norm) -> FloatArray:
    """Row-wise ``norm`` distance between ``a`` and ``b``."""
    diff = np.abs(a - b)
    if norm == "l2":
        return np.asarray(np.sqrt(np.sum(diff * diff, axis=-1)), dtype=np.float64)
    return np.asarray(np.max(diff, axis=-1), dtype=np.float64)


def _project(x0: FloatArray, x: FloatArray, alpha: FloatArray, norm: Norm) -> FloatArray:
    """The point at ``alpha`` between ``x0`` and ``x``: a blend (L2) or a box around x0 (Linf)."""
    a = alpha[:, None]
    if norm == "l2":
        return np.asarray((1.0 - a) * x0 + a * x, dtype=np.float64)
    return np.asarray(np.clip(x, x0 - a, x0 + a), dtype=np.float64)


class SearchState:
    """Every point's current and best adversarial point, advanced in lockstep."""

    def __init__(
        self,
        x0: FloatArray,
        oracle: Oracle,
        norm: Norm,
        lo: FloatArray,
        hi: FloatArray,
        gamma: float,
    ) -> None:
        n, d = x0.shape
        self.x0, self.oracle, self.norm, self.lo, self.hi = x0, oracle, norm, lo, hi
        self.d = d
        self.theta = gamma / d**1.5 if norm == "l2" else gamma / d**2
        self.tol = min(self.theta, _MAX_TOL)
        self.found = np.zeros(n, dtype=bool)
        self.done = np.zeros(n, dtype=bool)
        self.adv = x0.copy()
        self.dist_post = np.full(n, np.inf)
        self.best = x0.copy()
        self.best_dist = np.full(n, np.inf)
        self.best_label = np.empty(n, dtype=object)
        self.curve: list[tuple[int, float | None]] = []

    def median(self) -> float | None:
        m = float(np.median(self.best_dist))
        return m if math.isfinite(m) else None

    def curve_point(self) -> None:
        point = (int(self.oracle.spent.sum()), self.median())
        if not self.curve or self.curve[-1] != point:
            self.curve.append(point)

    def live(self, idx: IntArray) -> IntArray:
        keep = self.found[idx] & ~self.done[idx] & ~self.oracle.cut[idx]
        return idx[keep]

    def _keep_best(self, idx: IntArray, points: FloatArray, labels: NDArray[Any]) -> None:
        dist = _distance(points, self.x0[idx], self.norm)
        better = dist < self.best_dist[idx]
        self.best[idx[better]] = points[better]
        self.best_dist[idx[better]] = dist[better]
        self.best_label[idx[better]] = labels[better]
        self.found[idx] = True

    def initialise(self, idx: IntArray, rngs: Sequence[np.random.Generator], trials: int) -> None:
        """Draw uniform noise until each point has an adversarial start, then close in."""
        d = self.d
        start = np.zeros((len(self.x0), d))
        start_label = np.empty(len(self.x0), dtype=object)
        has = np.zeros(len(self.x0), dtype=bool)
        pending = idx
        tried = 0
        batch = 1
        while len(pending) and tried < trials:
            k = min(batch, trials - tried)
            take = []
            for p in pending:
                room = self.oracle.room(int(p))
                take.append(k if room is None else min(k, room))
            owner = np.repeat(pending, take)
            rows = np.concatenate(
                [
                    rngs[p].uniform(self.lo, self.hi, size=(m, d))
                    for p, m in zip(pending, take, strict=True)
                ]
            )
            adv, _, labels = self.oracle.decide(owner, rows)
            for p in pending:
                hits = np.flatnonzero((owner == p) & adv)
                if len(hits):
                    has[p] = True
                    start[p] = rows[hits[0]]
                    start_label[p] = labels[hits[0]]
            # A point that could not pay for all its draws is out of budget.
            short = np.array([m < k for m in take], dtype=bool)
            self.oracle.cut[pending[short & ~has[pending]]] = True
            pending = pending[~has[pending] & ~self.oracle.cut[pending]]
            tried += k
            batch *= 2
        ok = idx[has[idx]]
        if len(ok) == 0:
            return
        self._keep_best(ok, start[ok], start_label[ok])
        if self.norm == "l2":
            self.adv[ok], self.dist_post[ok] = self._boundary(ok, start[ok], start_label[ok])
        else:
            blend, blend_label = self._search(
                ok, start[ok], start_label[ok], np.ones(len(ok)), np.full(len(ok), _BLEND_TOL), "l2"
            )
            self.adv[ok], self.dist_post[ok] = self._boundary(ok, blend, blend_label)

    def _search(
        self,
        idx: IntArray,
        far: FloatArray,
        far_label: NDArray[Any],
        high: FloatArray,
        tol: FloatArray,
        norm: Norm,
    ) -> tuple[FloatArray, NDArray[Any]]:
        """Binary search between each original and its adversarial ``far`` point.

        Returns, per point, the last point the model labelled adversarial (``far`` itself if
        no query was answered) and its label.
        """
        x0 = self.x0[idx]
        out = far.copy()
        out_label = far_label.copy()
        high = high.copy()
        low = np.zeros(len(idx))
        going = (high - low) > tol
        while going.any():
            g = np.flatnonzero(going)
            mid = (high[g] + low[g]) / 2.0
            rows = _project(x0[g], far[g], mid, norm)
            adv, answered, labels = self.oracle.decide(idx[g], rows)
            yes = answered & adv
            no = answered & ~adv
            high[g[yes]] = mid[yes]
            out[g[yes]] = rows[yes]
            out_label[g[yes]] = labels[yes]
            low[g[no]] = mid[no]
            going[g[~answered]] = False
            going &= (high - low) > tol
        self._keep_best(idx, out, out_label)
        return out, out_label

    def _boundary(
        self, idx: IntArray, points: FloatArray, labels: NDArray[Any]
    ) -> tuple[FloatArray, FloatArray]:
        """The paper's binary search to the boundary, in the attack's norm.

        Returns the boundary points and the distance of ``points`` to the originals (the
        ``dist_post_update`` that sets the next ``delta``).
        """
        dist = _distance(points, self.x0[idx], self.norm)
        if self.norm == "l2":
            high = np.ones(len(idx))
            tol = np.full(len(idx), self.tol)
        else:
            high = dist
            tol = np.minimum(dist * self.tol, self.tol)
        out, _ = self._search(idx, points, labels, high, tol, self.norm)
        return out, dist

    def _search_steps(self, idx: IntArray) -> IntArray:
        """Queries the boundary search after a step will take, at most."""
        if self.norm == "l2":
            return np.full(len(idx), math.ceil(math.log2(1.0 / self.tol)), dtype=np.int64)
        dist = _distance(self.adv[idx], self.x0[idx], self.norm)
        tol = np.minimum(dist * self.tol, self.tol)
        ratio = np.ones(len(idx))
        np.divide(dist, tol, out=ratio, where=tol > 0)
        return np.asarray(np.ceil(np.log2(np.maximum(ratio, 1.0))), dtype=np.int64)

    def iterate(
        self,
        idx: IntArray,
        t: int,
        rngs: Sequence[np.random.Generator],
        init_evals: int,
        max_evals: int,
    ) -> None:
        """One HopSkipJump iteration for the points ``idx``."""
        norm, d = self.norm, self.d
        if t == 1:
            delta = np.full(len(idx), 0.1 * float(np.mean(self.hi - self.lo)))
        elif norm == "l2":
            delta = math.sqrt(d) * self.theta * self.dist_post[idx]
        else:
            delta = d * self.theta * self.dist_post[idx]
        wanted = min(int(init_evals * math.sqrt(t)), max_evals)
        reserve = self._search_steps(idx) + 1
        evals = np.full(len(idx), wanted, dtype=np.int64)
        for j, p in enumerate(idx):
            room = self.oracle.room(int(p))
            if room is not None:
                evals[j] = min(wanted, room - int(reserve[j]))
        stop = evals < 1
        self.done[idx[stop]] = True
        idx, delta, evals = idx[~stop], delta[~stop], evals[~stop]
        if len(idx) == 0:
            return
        update = self._gradient(idx, delta, evals, rngs)
        if norm == "linf":
            update = np.sign(update)
        moved = np.isfinite(update).all(axis=1)
        idx, update = idx[moved], update[moved]
        if len(idx) == 0:
            return
        dist = _distance(self.adv[idx], self.x0[idx], norm)
        eps = dist / math.sqrt(t)
        stepped = self.adv[idx].copy()
        stepped_label = self.best_label[idx].copy()
        going = np.ones(len(idx), dtype=bool)
        landed = np.zeros(len(idx), dtype=bool)
        for _ in range(_MAX_HALVINGS):
            g = np.flatnonzero(going)
            if len(g) == 0:
                break
            rows = np.clip(self.adv[idx[g]] + eps[g, None] * update[g], self.lo, self.hi)
            adv, answered, labels = self.oracle.decide(idx[g], rows)
            yes = answered & adv
            stepped[g[yes]] = rows[yes]
            stepped_label[g[yes]] = labels[yes]
            landed[g[yes]] = True
            eps[g[~yes]] /= 2.0
            going[g[yes | ~answered]] = False
        idx, stepped, stepped_label = idx[landed], stepped[landed], stepped_label[landed]
        if len(idx):
            self.adv[idx], self.dist_post[idx] = self._boundary(idx, stepped, stepped_label)

    def _gradient(
        self,
        idx: IntArray,
        delta: FloatArray,
        evals: IntArray,
        rngs: Sequence[np.random.Generator],
    ) -> FloatArray:
        """Monte-Carlo estimate of the boundary's normal at each point, one predict per chunk."""
        d = self.d
        grads = np.full((len(idx), d), np.nan)
        probes: list[FloatArray] = []
        for j, p in enumerate(idx):
            m = int(evals[j])
            if self.norm == "l2":
                u = rngs[p].standard_normal((m, d))
            else:
                u = rngs[p].uniform(-1.0, 1.0, size=(m, d))
            u /= np.sqrt(np.sum(u * u, axis=1, keepdims=True))
            probes.append(np.clip(self.adv[p] + delta[j] * u, self.lo, self.hi))
        start = 0
        while start < len(idx):
            stop, rows_in = start, 0
            while stop < len(idx) and (
                stop == start or (rows_in + evals[stop]) * d <= _ROWS_X_FEATURES
            ):
                rows_in += int(evals[stop])
                stop += 1
            owner = np.repeat(idx[start:stop], evals[start:stop])
            adv, answered, _ = self.oracle.decide(owner, np.concatenate(probes[start:stop]))
            offset = 0
            for j in range(start, stop):
                m = int(evals[j])
                ok = answered[offset : offset + m]
                if ok.all():
                    fval = 2.0 * adv[offset : offset + m] - 1.0
                    u = (probes[j] - self.adv[idx[j]]) / delta[j]
                    mean = float(fval.mean())
                    if mean == 1.0:
                        g = u.mean(axis=0)
                    elif mean == -1.0:
                        g = -u.mean(axis=0)
                    else:
                        g = ((fval - mean)[:, None] * u).mean(axis=0)
                    size = float(np.linalg.norm(g))
                    if size > 0.0:
                        grads[j] = g / size
                offset += m
            start = stop
        return grads
