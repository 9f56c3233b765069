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
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import ConfigDict, Field

from mlwarden.attacks._result import AttackResult
from mlwarden.errors import MlwardenError, ModelError, ParameterError, QueryBudgetExceeded

__all__ = [
    "CategoricalFeature",
    "ContinuousFeature",
    "ExtractedLeaf",
    "ExtractedTree",
    "LabelledLeafAPI",
    "LeafAPI",
    "LeafOracle",
    "TreeExtractionResult",
    "TreeSchema",
    "extract_tree",
]

FloatArray = NDArray[np.float64]
_N_UNIFORM = 10_000
_N_EXAMPLES = 5


# --------------------------------------------------------------------------------- the schema


@dataclass(frozen=True)
class ContinuousFeature:
    """A numeric feature the attacker may set anywhere in ``[low, high]``.

    With ``integer`` the feature takes whole values only, and boundaries are found exactly.
    """

    name: str
    low: float
    high: float
    integer: bool = False

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ParameterError(f"feature {self.name!r}: low {self.low} exceeds high {self.high}")


@dataclass(frozen=True)
class CategoricalFeature:
    """A feature taking one of ``categories``."""

    name: str
    categories: tuple[Any, ...]

    def __post_init__(self) -> None:
        if len(self.categories) == 0:
            raise ParameterError(f"feature {self.name!r} has no categories")


Feature = ContinuousFeature | CategoricalFeature


@dataclass(frozen=True)
class TreeSchema:
    """The input space the attacker knows: features in the model's column order.

    Internally a point is a float vector: the value of each continuous feature and the index
    into ``categories`` of each categorical one. ``as_frame`` decides what the model is sent:
    a DataFrame with the feature names as columns (True) or a plain float array (False, only
    when every feature is continuous).
    """

    features: tuple[Feature, ...]
    as_frame: bool = True

    @classmethod
    def from_frame(cls, X: pd.DataFrame, categorical: Sequence[str] | None = None) -> TreeSchema:
        """Read a schema off a table: ranges from each column's min and max.

        Columns named in ``categorical``, or else of a non-numeric or boolean dtype, are
        categorical (categories sorted as strings); integer columns are integer features.
        """
        features: list[Feature] = []
        for name in X.columns:
            column = X[name]
            is_cat = (
                name in categorical
                if categorical is not None
                else (
                    not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
                )
            )
            if is_cat:
                cats = sorted(pd.unique(column.dropna()), key=str)
                features.append(CategoricalFeature(str(name), tuple(cats)))
            else:
                features.append(
                    ContinuousFeature(
                        str(name),
                        float(column.min()),
                        float(column.max()),
                        integer=bool(pd.api.types.is_integer_dtype(column)),
                    )
                )
        return cls(tuple(features), as_frame=True)

    @classmethod
    def from_bounds(cls, low: Sequence[float], high: Sequence[float]) -> TreeSchema:
        """All-continuous schema for a model fitted on a plain array (sent a float array)."""
        feats = tuple(
            ContinuousFeature(f"x{i}", float(lo), float(hi))
            for i, (lo, hi) in enumerate(zip(low, high, strict=True))
        )
        return cls(feats, as_frame=False)

    @property
    def names(self) -> list[str]:
        """Feature names, in order."""
        return [f.name for f in self.features]

    def sample(self, n: int, rng: np.random.Generator) -> FloatArray:
        """``n`` points drawn uniformly from the input space, as internal codes."""
        cols: list[FloatArray] = []
        for f in self.features:
            if isinstance(f, CategoricalFeature):
                cols.append(rng.integers(0, len(f.categories), n).astype(float))
            elif f.integer:
                cols.append(rng.integers(math.ceil(f.low), math.floor(f.high) + 1, n).astype(float))
            else:
                cols.append(rng.uniform(f.low, f.high, n))
        return np.column_stack(cols) if cols else np.empty((n, 0))

    def decode(self, codes: FloatArray) -> pd.DataFrame | FloatArray:
        """Internal codes to what the model is sent."""
        codes = np.atleast_2d(codes)
        if not self.as_frame:
            return np.asarray(codes, dtype=float)
        data: dict[str, Any] = {}
        for j, f in enumerate(self.features):
            if isinstance(f, CategoricalFeature):
                cats = np.empty(len(f.categories), dtype=object)
                cats[:] = list(f.categories)
                data[f.name] = cats[codes[:, j].astype(int)]
            elif f.integer:
                data[f.name] = codes[:, j].astype(np.int64)
            else:
                data[f.name] = codes[:, j]
        return pd.DataFrame(data)

    def encode(self, X: pd.DataFrame | NDArray[Any]) -> FloatArray:
        """Model inputs to internal codes (an unknown category becomes -1)."""
        if not isinstance(X, pd.DataFrame):
            return np.asarray(X, dtype=float).reshape(len(X), len(self.features))
        cols: list[FloatArray] = []
        for f in self.features:
            column = X[f.name]
            if isinstance(f, CategoricalFeature):
                index = {str(c): i for i, c in enumerate(f.categories)}
                cols.append(np.array([index.get(str(v), -1) for v in column], dtype=float))
            else:
                cols.append(np.asarray(column, dtype=float))
        return np.column_stack(cols)


# --------------------------------------------------------------------------------- the oracle


@runtime_checkable
class LeafAPI(Protocol):
    """All the attack needs: the identity of the leaf deciding each row."""

    def leaf(self, X: Any) -> NDArray[Any]: ...


@runtime_checkable
class LabelledLeafAPI(Protocol):
    """An API answering each row with its leaf identity and predicted class, as BigML did."""

    def leaf_and_label(self, X: Any) -> tuple[NDArray[Any], NDArray[Any]]: ...


def _split_pipeline(model: Any) -> tuple[Callable[[Any], Any], Any]:
    """The preprocessing (a transform) and the final tree of a tree or a Pipeline."""
    from sklearn.pipeline import Pipeline
    from sklearn.tree import DecisionTreeClassifier

    if isinstance(model, Pipeline):
        prefix, final = model[:-1], model.steps[-1][1]

        def transform(X: Any) -> Any:
            return prefix.transform(X)
    else:
        final = model

        def transform(X: Any) -> Any:
            return X

    if not isinstance(final, DecisionTreeClassifier):
        raise ModelError(
            f"{type(final).__name__} is not a DecisionTreeClassifier: leaves cannot be named"
        )
    return transform, final


class LeafOracle:
    """A prediction API over a fitted tree that names the leaf deciding each row.

    Wraps a fitted ``DecisionTreeClassifier`` or a Pipeline ending in one (its preprocessing,
    one-hot encoding of categoricals say, runs first). Each row counts as one query; with a
    ``budget``, a call that would exceed it is refused whole, before the model runs, with
    :class:`~mlwarden.errors.QueryBudgetExceeded` (as :class:`SklearnAdapter` does).

    ``identify="leaf"`` returns the leaf's node id (scikit-learn's ``apply``).
    ``identify="confidence"`` is the weaker API that returns only the class-probability
    vector: a leaf is then named by its rounded probabilities, assuming, as Tramèr et al. do
    for BigML, that distinct leaves have distinct confidence values. Where two leaves share
    one (two pure leaves, say), the attack merges them and may miss leaves.
    """

    def __init__(
        self,
        model: Any,
        budget: int | None = None,
        identify: Literal["leaf", "confidence"] = "leaf",
        decimals: int = 9,
    ) -> None:
        if budget is not None and budget < 0:
            raise ParameterError(f"budget must be a non-negative number of queries, got {budget}")
        if identify not in ("leaf", "confidence"):
            raise ParameterError(f"identify must be 'leaf' or 'confidence', got {identify!r}")
        self._transform, self._tree = _split_pipeline(model)
        self.model = model
        self.budget = budget
        self.identify = identify
        self.decimals = decimals
        self._queries = 0

    @property
    def queries(self) -> int:
        """Rows queried so far."""
        return self._queries

    def _spend(self, n: int) -> None:
        if self.budget is not None and self._queries + n > self.budget:
            raise QueryBudgetExceeded(
                f"query budget of {self.budget} rows would be exceeded: "
                f"{self._queries} spent, {n} asked"
            )
        self._queries += n

    def _inputs(self, X: Any) -> Any:
        named = hasattr(self.model, "feature_names_in_")
        if isinstance(X, pd.DataFrame) and not named:
            return X.to_numpy(dtype=float)
        return X

    def leaf_and_label(self, X: Any) -> tuple[NDArray[Any], NDArray[Any]]:
        """Leaf identity and predicted class of each row (one query per row)."""
        self._spend(len(X))
        Xt = self._transform(self._inputs(X))
        proba = np.asarray(self._tree.predict_proba(Xt))
        labels = np.asarray(self._tree.classes_)[np.argmax(proba, axis=1)]
        if self.identify == "leaf":
            ids: NDArray[Any] = np.asarray(self._tree.apply(Xt))
        else:
            rounded = np.round(proba, self.decimals)
            ids = np.array(["|".join(f"{p:.{self.decimals}f}" for p in row) for row in rounded])
        return ids, labels

    def leaf(self, X: Any) -> NDArray[Any]:
        """Leaf identity of each row (one query per row)."""
        return self.leaf_and_label(X)[0]


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


def _true_tree(target: Any) -> tuple[Callable[[Any], Any], Any]:
    return _split_pipeline(target)


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
        transform, true_tree = _true_tree(target)
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
