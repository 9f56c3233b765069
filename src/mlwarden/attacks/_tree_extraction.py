"""Path-finding extraction of a decision tree from an API that names the leaf of each query.

Reference: Florian Tramèr, Fan Zhang, Ari Juels, Michael K. Reiter, Thomas Ristenpart,
"Stealing Machine Learning Models via Prediction APIs", USENIX Security 2016, §4.2,
Algorithm 1 (path finding). The attacker sends inputs and reads back, per row, an identity of
the leaf that decided it (BigML returned a confidence value unique to each leaf) and the
predicted class; it never sees the tree's structure.

Each leaf of a tree is a box: an interval per continuous feature and a set of allowed
categories per categorical feature. From a point in a new leaf the attack recovers that box
and queues one point just outside each of its faces, so every leaf next to it is visited in
turn, until no new leaf turns up (a tree's leaves are all reached this way). The box is found
as the paper does, feature by feature with the others held fixed, with two savings that change
no answer: (1) changes to several features are tried in one query first ("group testing"):
as a box is a product, the changed point stays in the leaf exactly when every single change
does, so a query that keeps the leaf clears them all at once and only a query that leaves it
is split in halves; (2) a point already known to lie inside a recovered box is not queried,
and a boundary search tries first the thresholds other leaves already revealed on that feature
(siblings share their parents' splits) before bisecting to precision ``epsilon``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import ConfigDict, Field

from mlwarden.attacks._result import AttackResult
from mlwarden.attacks._tree_oracle import (
    CategoricalFeature,
    FloatArray,
    LabelledLeafAPI,
    LeafAPI,
    LeafOracle,
    TreeSchema,
    split_pipeline,
)
from mlwarden.errors import MlwardenError, ModelError, ParameterError, QueryBudgetExceeded

__all__ = ["ExtractedLeaf", "ExtractedTree", "TreeExtractionResult", "extract_tree"]

_N_UNIFORM = 10_000
_N_EXAMPLES = 5


# ------------------------------------------------------------------------------ the extracted copy


@dataclass
class ExtractedLeaf:
    """One recovered leaf: its box, the API's name for it, and its class (None if unknown).

    For continuous feature ``j`` the attack knows ``lo_out[j] < boundary <= lo_in[j]`` and
    ``hi_in[j] <= boundary < hi_out[j]`` (infinite where the leaf reaches the range's end); the
    copy cuts each bracket in the middle. For categorical feature ``j`` the allowed codes are
    ``allowed[j]``.
    """

    leaf_id: Hashable
    label: Any
    lo_out: FloatArray
    lo_in: FloatArray
    hi_in: FloatArray
    hi_out: FloatArray
    allowed: dict[int, frozenset[int]] = field(default_factory=dict)

    def lower(self) -> FloatArray:
        """Exclusive lower bound per feature used by the copy."""
        out: FloatArray = np.where(np.isinf(self.lo_out), -np.inf, (self.lo_out + self.lo_in) / 2.0)
        return out

    def upper(self) -> FloatArray:
        """Inclusive upper bound per feature used by the copy."""
        out: FloatArray = np.where(np.isinf(self.hi_out), np.inf, (self.hi_in + self.hi_out) / 2.0)
        return out

    def surely_contains(self, x: FloatArray) -> bool:
        """Whether ``x`` is certainly in this leaf (not inside any unresolved bracket)."""
        if not (np.all(x >= self.lo_in) and np.all(x <= self.hi_in)):
            return False
        return all(int(x[j]) in cats for j, cats in self.allowed.items())

    def describe(self, schema: TreeSchema) -> dict[str, Any]:
        """The leaf's constraints, readable."""
        rules: dict[str, Any] = {}
        lower, upper = self.lower(), self.upper()
        for j, f in enumerate(schema.features):
            if isinstance(f, CategoricalFeature):
                if len(self.allowed[j]) < len(f.categories):
                    rules[f.name] = sorted(str(f.categories[c]) for c in self.allowed[j])
            elif np.isfinite(lower[j]) or np.isfinite(upper[j]):
                rules[f.name] = [float(lower[j]), float(upper[j])]
        return {"leaf_id": str(self.leaf_id), "label": str(self.label), "constraints": rules}


class ExtractedTree:
    """The stolen copy: a list of leaf boxes, each with the class the API gave it.

    A point goes to the leaf whose box it satisfies (boxes recovered to ``epsilon``; a point
    that fits none, in an unresolved sliver or with an unseen category, goes to the box it
    violates on the fewest features).
    """

    def __init__(self, schema: TreeSchema, leaves: Sequence[ExtractedLeaf]) -> None:
        self.schema = schema
        self.leaves = list(leaves)

    def _leaf_index(self, X: Any) -> NDArray[np.int64]:
        codes = self.schema.encode(X)
        if not self.leaves:
            raise ModelError("the extracted tree has no leaves")
        violations = np.zeros((len(codes), len(self.leaves)), dtype=np.int64)
        for k, leaf in enumerate(self.leaves):
            lower, upper = leaf.lower(), leaf.upper()
            for j, f in enumerate(self.schema.features):
                col = codes[:, j]
                if isinstance(f, CategoricalFeature):
                    bad = ~np.isin(col, np.fromiter(leaf.allowed[j], dtype=float))
                else:
                    bad = (col <= lower[j]) | (col > upper[j])
                violations[:, k] += bad
        return np.asarray(np.argmin(violations, axis=1), dtype=np.int64)

    def leaf(self, X: Any) -> NDArray[Any]:
        """The API's identity of the recovered leaf each row falls in."""
        ids = np.empty(len(self.leaves), dtype=object)
        ids[:] = [leaf.leaf_id for leaf in self.leaves]
        return np.asarray(ids[self._leaf_index(X)])

    def predict(self, X: Any) -> NDArray[Any]:
        """The class of the recovered leaf each row falls in."""
        if any(leaf.label is None for leaf in self.leaves):
            raise ModelError("the API gave no classes (leaf identities only): use leaf()")
        labels = np.array([leaf.label for leaf in self.leaves])
        return np.asarray(labels[self._leaf_index(X)])


# ---------------------------------------------------------------------------------- the attack


class TreeExtractionResult(AttackResult):
    """What path finding recovered, at what cost, and how faithful the copy is.

    ``leaves_found`` counts recovered leaves; ``leaves_total`` is the true tree's count (read
    from the target for evaluation only; None when no target was given).
    ``queries_to_extract`` and ``seconds_to_extract`` are spent when the last leaf's box was
    complete (the rest only confirmed no leaf was left). ``fidelity_uniform`` is the share of
    ``n_points`` uniform random inputs on which the copy and the target agree (on the class,
    or on the leaf when the API gave no classes); ``fidelity_test`` the same on a given test
    set. ``success_rate`` is ``fidelity_uniform``. ``tree`` is the copy (not serialised).
    """

    model_config = ConfigDict(defer_build=True, arbitrary_types_allowed=True)

    leaves_found: int
    leaves_total: int | None
    queries_to_extract: int
    seconds_to_extract: float
    fidelity_test: float | None
    fidelity_uniform: float | None
    complete: bool
    tree: ExtractedTree | None = Field(default=None, exclude=True)


class _Stop(MlwardenError):
    """The budget ran out."""


class _Session:
    """Queries the API one point at a time, with a cache and the budget."""

    def __init__(self, api: Any, schema: TreeSchema, budget: int | None) -> None:
        self.api = api
        self.schema = schema
        self.budget = budget
        self.spent = 0
        self.cache: dict[tuple[float, ...], tuple[Hashable, Any]] = {}
        self.labelled = isinstance(api, LabelledLeafAPI)
        self.leaves: dict[Hashable, ExtractedLeaf] = {}

    def known(self, x: FloatArray) -> Hashable | None:
        """The leaf of ``x`` if already known without a query."""
        hit = self.cache.get(tuple(x.tolist()))
        if hit is not None:
            return hit[0]
        for leaf in self.leaves.values():
            if leaf.surely_contains(x):
                return leaf.leaf_id
        return None

    def query(self, x: FloatArray) -> tuple[Hashable, Any]:
        """Leaf identity and class (None if the API gives none) of ``x``."""
        key = tuple(x.tolist())
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        if self.budget is not None and self.spent + 1 > self.budget:
            raise _Stop
        rows = self.schema.decode(x[None, :])
        try:
            if self.labelled:
                ids, labels = self.api.leaf_and_label(rows)
                label: Any = labels[0].item() if hasattr(labels[0], "item") else labels[0]
            else:
                ids = self.api.leaf(rows)
                label = None
        except QueryBudgetExceeded as exc:
            raise _Stop from exc
        self.spent += 1
        raw = ids[0]
        leaf_id: Hashable = raw.item() if hasattr(raw, "item") else raw
        self.cache[key] = (leaf_id, label)
        return leaf_id, label

    def leaf_of(self, x: FloatArray) -> Hashable:
        """Leaf of ``x``: from what is known, else a query."""
        known = self.known(x)
        return known if known is not None else self.query(x)[0]


def _with(x: FloatArray, changes: Sequence[tuple[int, float]]) -> FloatArray:
    y = x.copy()
    for j, v in changes:
        y[j] = v
    return y


def _explore(
    s: _Session,
    x: FloatArray,
    leaf_id: Hashable,
    label: Any,
    brackets: list[set[tuple[float, float]]],
    epsilon: float,
) -> list[FloatArray]:
    """Recover the box of the leaf holding ``x``; return points just outside its faces."""
    feats = s.schema.features
    d = len(feats)
    inside = {}  # (feature, value) -> stays in the leaf

    def stays(changes: Sequence[tuple[int, float]]) -> bool:
        return s.leaf_of(_with(x, changes)) == leaf_id

    # Single changes already settled by what is known.
    tests: list[list[float]] = []
    for j, f in enumerate(feats):
        if isinstance(f, CategoricalFeature):
            values = [float(c) for c in range(len(f.categories)) if c != int(x[j])]
        else:
            values = [v for v in (f.low, f.high) if v != x[j]]
        todo = []
        for v in values:
            known = s.known(_with(x, [(j, v)]))
            if known is not None:
                inside[(j, v)] = known == leaf_id
            else:
                todo.append(v)
        tests.append(todo)

    def group(changes: list[tuple[int, float]], failed: bool = False) -> None:
        if not changes:
            return
        if len(changes) == 1 and failed:
            inside[changes[0]] = False
            return
        if not failed and stays(changes):
            for c in changes:
                inside[c] = True
            return
        if len(changes) == 1:
            inside[changes[0]] = False
            return
        half = len(changes) // 2
        first, second = changes[:half], changes[half:]
        group(first)
        # If the first half all stayed, the failure is in the second.
        group(second, failed=all(inside[c] for c in first))

    rounds = max((len(t) for t in tests), default=0)
    for k in range(rounds):
        group([(j, t[k]) for j, t in enumerate(tests) if k < len(t)])

    box = ExtractedLeaf(
        leaf_id,
        label,
        lo_out=np.full(d, -np.inf),
        lo_in=x.copy(),
        hi_in=x.copy(),
        hi_out=np.full(d, np.inf),
    )
    frontier: list[FloatArray] = []
    for j, f in enumerate(feats):
        if isinstance(f, CategoricalFeature):
            allowed = {int(x[j])}
            for c in range(len(f.categories)):
                if c != int(x[j]):
                    if inside[(j, float(c))]:
                        allowed.add(c)
                    else:
                        frontier.append(_with(x, [(j, float(c))]))
            box.allowed[j] = frozenset(allowed)
            continue
        for end, sign in ((f.high, 1.0), (f.low, -1.0)):
            if end == x[j] or inside[(j, end)]:
                if sign > 0:
                    box.hi_in[j] = end
                else:
                    box.lo_in[j] = end
                continue
            good, bad = _boundary(stays, j, float(x[j]), end, f.integer, brackets[j], epsilon)
            brackets[j].add((min(good, bad), max(good, bad)))
            if sign > 0:
                box.hi_in[j], box.hi_out[j] = good, bad
            else:
                box.lo_in[j], box.lo_out[j] = good, bad
            frontier.append(_with(x, [(j, bad)]))
    s.leaves[leaf_id] = box
    return frontier


def _boundary(
    stays: Callable[[Sequence[tuple[int, float]]], bool],
    j: int,
    good: float,
    bad: float,
    integer: bool,
    known: set[tuple[float, float]],
    epsilon: float,
) -> tuple[float, float]:
    """Bracket the leaf's face on feature ``j`` between ``good`` (inside) and ``bad`` (out).

    Tries the ends of brackets other leaves found on this feature first, by bisection over
    them, then bisects the remaining gap to ``epsilon`` (to adjacent integers for integer
    features).
    """
    lo, hi = min(good, bad), max(good, bad)
    cands = sorted({v for pair in known for v in pair if lo < v < hi})
    while cands:
        mid = cands[len(cands) // 2]
        if stays([(j, mid)]):
            good = mid
        else:
            bad = mid
        lo, hi = min(good, bad), max(good, bad)
        cands = [v for v in cands if lo < v < hi]
    while True:
        if integer:
            if abs(bad - good) <= 1:
                break
            mid = float(math.floor((good + bad) / 2))
        else:
            if abs(bad - good) <= epsilon:
                break
            mid = (good + bad) / 2
        if stays([(j, mid)]):
            good = mid
        else:
            bad = mid
    return good, bad


def extract_tree(
    oracle: LeafAPI | LabelledLeafAPI,
    schema: TreeSchema,
    *,
    budget: int | None = None,
    epsilon: float = 1e-3,
    seed: int = 0,
    target: Any = None,
    X_test: Any = None,
    n_uniform: int = _N_UNIFORM,
) -> TreeExtractionResult:
    """Steal a decision tree by path finding (Tramèr et al. 2016, §4.2, Algorithm 1).

    Parameters
    ----------
    oracle
        The API: anything with ``leaf(X)`` (leaf identities) or, better,
        ``leaf_and_label(X)`` (identities and predicted classes in one query, as BigML
        answered); a :class:`LeafOracle`, say. With ``leaf`` alone the copy knows leaves but
        not classes (``ExtractedTree.predict`` refuses; ``leaf`` works). Nothing else is read.
    schema
        The input space: continuous features with ranges, categorical ones with categories.
    budget
        Most queries the attack may send; it stops, returning what it has
        (``complete=False``), rather than exceed it or the oracle's own budget.
    epsilon
        Precision of the boundary search on non-integer continuous features.
    seed
        Seeds the first query and the uniform evaluation points.
    target
        The true model (a tree or Pipeline ending in one), for evaluation only: leaf count
        and fidelity. Defaults to ``oracle.model`` when the oracle is a :class:`LeafOracle`.
        Evaluation sends it no counted queries.
    X_test
        Optional inputs (in the model's format) for ``fidelity_test``.
    n_uniform
        Number of uniform random inputs for ``fidelity_uniform``.

    Returns
    -------
    TreeExtractionResult
        Cost and fidelity, with the copy in ``tree``.

    References
    ----------
    F. Tramèr, F. Zhang, A. Juels, M. K. Reiter, T. Ristenpart, "Stealing Machine Learning
    Models via Prediction APIs", USENIX Security 2016.
    """
    if not isinstance(oracle, LabelledLeafAPI | LeafAPI):
        raise ModelError("the oracle must offer leaf(X) or leaf_and_label(X)")
    if epsilon <= 0:
        raise ParameterError(f"epsilon must be positive, got {epsilon}")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    s = _Session(oracle, schema, budget)
    brackets: list[set[tuple[float, float]]] = [set() for _ in schema.features]
    queue: deque[FloatArray] = deque([schema.sample(1, rng)[0]])
    queries_to_extract, seconds_to_extract = 0, 0.0
    complete = True
    try:
        while queue:
            x = queue.popleft()
            if s.known(x) is not None and s.known(x) in s.leaves:
                continue
            leaf_id, label = s.query(x)
            if leaf_id in s.leaves:
                continue
            queue.extend(_explore(s, x, leaf_id, label, brackets, epsilon))
            queries_to_extract, seconds_to_extract = s.spent, time.perf_counter() - start
    except _Stop:
        complete = False
        queries_to_extract, seconds_to_extract = s.spent, time.perf_counter() - start

    tree = ExtractedTree(schema, list(s.leaves.values()))
    if target is None and isinstance(oracle, LeafOracle):
        target = oracle.model
    leaves_total: int | None = None
    fid_uniform: float | None = None
    fid_test: float | None = None
    if target is not None and tree.leaves:
        transform, true_tree = split_pipeline(target)
        leaves_total = int(true_tree.get_n_leaves())
        labelled = s.labelled

        def agreement(X: Any) -> float:
            if labelled:
                truth = np.asarray(target.predict(X))
                return float(np.mean(tree.predict(X) == truth))
            named = hasattr(target, "feature_names_in_")
            Xin = X.to_numpy(dtype=float) if isinstance(X, pd.DataFrame) and not named else X
            truth = np.asarray(true_tree.apply(transform(Xin)))
            return float(np.mean(tree.leaf(X).astype(truth.dtype) == truth))

        fid_uniform = agreement(schema.decode(schema.sample(n_uniform, rng)))
        if X_test is not None:
            fid_test = agreement(X_test)

    return TreeExtractionResult(
        attack="tree_path_finding",
        n_points=n_uniform,
        success_rate=fid_uniform if fid_uniform is not None else 0.0,
        queries=s.spent,
        budget=budget,
        wall_time_s=time.perf_counter() - start,
        params={"epsilon": epsilon, "seed": seed, "n_features": len(schema.features)},
        examples=[leaf.describe(schema) for leaf in tree.leaves[:_N_EXAMPLES]],
        leaves_found=len(tree.leaves),
        leaves_total=leaves_total,
        queries_to_extract=queries_to_extract,
        seconds_to_extract=seconds_to_extract,
        fidelity_test=fid_test,
        fidelity_uniform=fid_uniform,
        complete=complete,
        tree=tree,
    )
