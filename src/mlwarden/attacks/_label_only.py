"""Label-only extraction of linear and one-hot linear models by boundary line search.

References: Daniel Lowd, Christopher Meek, "Adversarial Learning", KDD 2005 (a point on the
decision boundary of a linear classifier, then each weight relative to one reference weight
by line search); Florian Tramèr, Fan Zhang, Ari Juels, Michael K. Reiter, Thomas Ristenpart,
"Stealing Machine Learning Models via Prediction APIs", USENIX Security 2016, §6 (label-only
extraction; one-hot categorical features read through a continuous one).

A two-class linear model answers ``sign(w.x + b)``. The attack (1) finds one row of each class,
(2) bisects the segment between them to a boundary point ``x0``, (3) picks a numeric reference
feature ``j`` whose move flips the label at ``x0``, and (4) for every other design column moves
``x0`` by a known step ``Δ`` (a numeric feature by ``δ``, a categorical column to another
category) and bisects along ``j`` to the ``t`` where the label flips back: that point is on the
boundary too, so ``w.Δ + t w_j = 0``. The ``d - 1`` equations and ``w_j = ±1`` form a square
linear system for ``w`` (up to scale); ``b = -w.x0``. Every probe of step (4) runs in lockstep,
one batch per bisection step, and every row is counted by the model adapter.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from mlwarden.attacks._extraction import (
    ExtractedLinearModel,
    ExtractionResult,
    OneHotDesign,
    _as_box,
    _labels,
    _relative_true_parameters,
    fidelity,
)
from mlwarden.errors import DataError, ModelError, ParameterError, QueryBudgetExceeded
from mlwarden.models import ModelAdapter

__all__ = ["LabelOnlyExtractionResult", "extract_linear_labels", "extract_linear_labels_pipeline"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

GOAL_PER_PARAMETER = 20  # queries per unknown the default run fits (issue 17's goal)
DEFAULT_STEPS = 16  # bisection steps per probe at most: ~2**-16 relative error
_FLOOR_STEPS = 10  # fewest without a budget
_X0_STEPS = 30  # the boundary point every probe starts from may get more
_MIN_X0_STEPS = 8
_PAIR_BATCH, _PAIR_ROUNDS = 4, 8  # rows per try for one row of each class; box x4 after two
_REFERENCE_ROUNDS = 3  # x4 larger moves when no feature flips the boundary point
_MAX_EXPANSIONS = 12  # bracket growth x4 each: ratios up to 4**12 times the first guess


class LabelOnlyExtractionResult(ExtractionResult):
    """What label-only line search recovered and how faithful the copy is.

    As :class:`ExtractionResult`, with ``coef`` and ``intercept`` scaled to a unit-norm weight
    vector (labels fix the hyperplane, not its scale) and ``max_abs_weight_error`` compared in
    that scale. ``reference`` names the feature searched along, ``search_steps`` the bisection
    steps per probe, ``unbracketed`` the probes whose flip was not found (a non-linear target,
    or a reference weight near zero).
    """

    reference: str
    search_steps: int
    unbracketed: int


class _Space:
    """Where probes live: numeric values plus category codes, sent as arrays or DataFrames."""

    def __init__(
        self,
        numeric: list[str],
        design: OneHotDesign | None,
        anchor: IntArray,
        low: FloatArray,
        high: FloatArray,
    ) -> None:
        self.numeric, self.design, self.anchor = numeric, design, anchor
        self.low, self.high = low, high
        self.categories = list(design.categories.items()) if design is not None else []

    def queries(self, numbers: FloatArray, codes: IntArray) -> Any:
        """What is sent to the model for these rows."""
        if self.design is None:
            return numbers
        data: dict[str, Any] = {name: numbers[:, j] for j, name in enumerate(self.numeric)}
        for k, (name, values) in enumerate(self.categories):
            data[name] = np.asarray(values, dtype=object)[codes[:, k]]
        return pd.DataFrame(data, columns=self.design.columns)

    def design_rows(self, numbers: FloatArray, codes: IntArray) -> FloatArray:
        """The design matrix the linear model acts on (raw numerics, then indicators)."""
        if self.design is None:
            return numbers
        return self.design.transform(self.queries(numbers, codes))

    def anchors(self, n: int) -> IntArray:
        return np.tile(self.anchor, (n, 1))

    def uniform(self, n: int, rng: np.random.Generator) -> Any:
        numbers = rng.uniform(self.low, self.high, (n, len(self.numeric)))
        codes = np.column_stack(
            [rng.integers(len(values), size=n) for _, values in self.categories]
            or [np.zeros((n, 0), dtype=np.int64)]
        ).astype(np.int64)
        return self.queries(numbers, codes)


class _Oracle:
    """Labels through ``model.predict``, as booleans (positive class), within a budget."""

    def __init__(self, model: ModelAdapter, space: _Space, budget: int | None) -> None:
        self.model, self.space, self.budget, self.spent = model, space, budget, 0
        self.positive = np.asarray(model.classes_)[1]

    def __call__(self, numbers: FloatArray, codes: IntArray) -> BoolArray:
        n = len(numbers)
        if self.budget is not None and self.spent + n > self.budget:
            raise QueryBudgetExceeded(
                f"label-only extraction would pass its budget of {self.budget} queries "
                f"({self.spent} spent, {n} asked)"
            )
        labels = _labels(self.model, self.space.queries(numbers, codes))
        self.spent += n
        return np.asarray(labels == self.positive, dtype=bool)


def _find_pair(
    oracle: _Oracle, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """One row of each class (categories at the anchor), widening the box when needed; and
    the box's half-width then, the scale of every later move."""
    space = oracle.space
    centre, half = (space.low + space.high) / 2.0, (space.high - space.low) / 2.0
    half = np.where(half > 0, half, 1.0)
    seen: list[bool] = []
    for round_ in range(_PAIR_ROUNDS):
        numbers = centre + half * rng.uniform(-1.0, 1.0, (_PAIR_BATCH, len(centre)))
        labels = oracle(numbers, space.anchors(_PAIR_BATCH))
        seen.extend(labels.tolist())
        if labels.any() and not labels.all():
            return numbers[np.argmax(labels)], numbers[np.argmin(labels)], half
        if round_ >= 1:
            half = half * 4.0
    raise ModelError(
        f"label-only extraction needs rows of both classes; the model answered "
        f"{'the positive' if seen[0] else 'the negative'} class to all {len(seen)} queries"
    )


def _bisect(
    label_at: Callable[[FloatArray], BoolArray],
    low: FloatArray,
    high: FloatArray,
    low_label: BoolArray,
    steps: int,
) -> FloatArray:
    """Lockstep bisection of ``len(low)`` segments whose ends have different labels."""
    low, high = low.copy(), high.copy()
    for _ in range(steps):
        middle = (low + high) / 2.0
        same = label_at(middle) == low_label
        low = np.where(same, middle, low)
        high = np.where(same, high, middle)
    return (low + high) / 2.0


def _reference(oracle: _Oracle, x0: FloatArray, step: FloatArray) -> tuple[int, bool, float]:
    """The first numeric feature whose move by ``step`` flips the label at ``x0``, the sign of
    its weight (True: moving it up gives the positive class) and the move that flipped it.

    Steps grow x4 a round when no feature flips (a boundary point found with few bisection
    steps may sit further from the boundary than one step moves)."""
    codes = oracle.space.anchors(2)
    for round_ in range(_REFERENCE_ROUNDS):
        scale = 4.0**round_
        for j in range(len(x0)):
            rows = np.vstack([x0, x0])
            rows[0, j] += scale * step[j]
            rows[1, j] -= scale * step[j]
            up, down = oracle(rows, codes)
            if up != down:
                return j, bool(up), float(scale * step[j])
    raise ModelError(
        "no numeric feature moves the decision at the boundary point found: label-only line "
        "search needs a numeric feature with a non-zero weight (is the model linear?)"
    )


def _probes(
    space: _Space, x0: FloatArray, step: FloatArray, j: int
) -> tuple[FloatArray, IntArray, FloatArray]:
    """Every probe's start (numbers, codes) and its design step Δ: one per design column but
    the reference (numerics moved by ``step``, categoricals switched from their anchor)."""
    n_num = len(x0)
    numbers, codes, deltas = [], [], []
    offsets = np.cumsum([n_num] + [len(v) - 1 for _, v in space.categories])
    p = int(offsets[-1])
    for i in range(n_num):
        if i != j:
            row, delta = x0.copy(), np.zeros(p)
            row[i] += step[i]
            delta[i] = step[i]
            numbers.append(row)
            codes.append(space.anchor.copy())
            deltas.append(delta)
    for k, (_, values) in enumerate(space.categories):
        anchor = int(space.anchor[k])
        for v in range(len(values)):
            if v == anchor:
                continue
            code, delta = space.anchor.copy(), np.zeros(p)
            code[k] = v
            if v > 0:
                delta[offsets[k] + v - 1] += 1.0
            if anchor > 0:
                delta[offsets[k] + anchor - 1] -= 1.0
            numbers.append(x0.copy())
            codes.append(code)
            deltas.append(delta)
    return (
        np.asarray(numbers, dtype=np.float64).reshape(-1, n_num),
        np.asarray(codes, dtype=np.int64).reshape(len(numbers), len(space.categories)),
        np.asarray(deltas, dtype=np.float64).reshape(-1, p),
    )


def _search(
    oracle: _Oracle,
    numbers: FloatArray,
    codes: IntArray,
    j: int,
    start: float,
    positive_up: bool,
    steps: int,
    allowance: int,
    floor: int,
) -> tuple[FloatArray, int, int]:
    """For each probe, the shift ``t`` along feature ``j`` that puts it on the boundary.

    The label at ``t = 0`` says on which side of 0 the root lies; the bracket then grows x4
    from ``start`` until the label flips; the bisection spends ``steps``, fewer (not below
    ``floor``) if the ``allowance`` of queries leaves less. Returns ``t``, the steps used and
    the number of unbracketed probes.
    """

    def label_at(t: FloatArray, rows: IntArray) -> BoolArray:
        moved = numbers[rows].copy()
        moved[:, j] += t
        return oracle(moved, codes[rows])

    n = len(numbers)
    everyone = np.arange(n)
    at_zero = label_at(np.zeros(n), everyone)
    # score(t) = w.Δ + t w_j: positive at 0 with w_j > 0 puts the root below 0.
    direction = np.where(at_zero == positive_up, -1.0, 1.0)
    low, high = np.zeros(n), direction * start
    pending = everyone
    for _ in range(_MAX_EXPANSIONS):
        if len(pending) == 0:
            break
        flipped = label_at(high[pending], pending) != at_zero[pending]
        grow = pending[~flipped]
        low[grow] = high[grow]
        high[grow] = high[grow] * 4.0
        pending = grow
    steps = int(max(floor, min(steps, (allowance - oracle.spent) // max(n, 1))))
    t = _bisect(lambda s: label_at(s, everyone), low, high, at_zero, steps)
    return t, steps, len(pending)


@dataclass(frozen=True)
class _Found:
    """What the line search recovered: unit-norm weights and how it got them."""

    coef: FloatArray
    intercept: float
    x0: FloatArray
    reference: int
    x0_steps: int
    steps: int
    unbracketed: int


def _recover(oracle: _Oracle, p: int, search_steps: int | None, rng: np.random.Generator) -> _Found:
    """The attack proper: a boundary point, a reference feature, one line search per other
    design column, and the hyperplane they pin down."""
    space = oracle.space
    positive, negative, step = _find_pair(oracle, rng)
    # Bisection steps fit the budget or, without one, the 20 (d + 1) goal (then never fewer
    # than _FLOOR_STEPS a probe: precision comes first).
    allowance = oracle.budget if oracle.budget is not None else GOAL_PER_PARAMETER * (p + 1)
    per_column = (allowance - oracle.spent - 2 - 2 * (p - 1)) // p
    x0_steps = int(min(_X0_STEPS, max(_MIN_X0_STEPS, per_column + 4)))
    if oracle.budget is not None:
        x0_steps = min(x0_steps, oracle.budget - oracle.spent - 2 - 3 * (p - 1))
    s = _bisect(
        lambda s: oracle(negative + s[:, None] * (positive - negative), space.anchors(len(s))),
        np.zeros(1), np.ones(1), np.zeros(1, dtype=bool), x0_steps,
    )  # fmt: skip
    x0 = negative + s[0] * (positive - negative)
    j, positive_up, reference_step = _reference(oracle, x0, step)
    numbers, codes, deltas = _probes(space, x0, step, j)
    steps = search_steps if search_steps is not None else DEFAULT_STEPS
    t, unbracketed = np.zeros(0), 0
    if not len(numbers):
        steps = 0
    else:
        t, steps, unbracketed = _search(
            oracle, numbers, codes, j, reference_step, positive_up, steps, allowance,
            0 if oracle.budget is not None else min(steps, _FLOOR_STEPS),
        )  # fmt: skip
    # w.Δ_i + t_i w_j = 0 for each probe, and w_j = ±1: a square system in the design weights.
    w_j = 1.0 if positive_up else -1.0
    system = np.vstack([deltas, np.eye(p)[j]])
    rhs = np.concatenate([-t * w_j, [w_j]])
    w = np.linalg.solve(system, rhs)
    x0_design = space.design_rows(x0[None, :], space.anchors(1))[0]
    b = -float(w @ x0_design)
    scale = float(np.linalg.norm(w))
    return _Found(w / scale, b / scale, x0, j, x0_steps, steps, unbracketed)


def _run(
    *,
    method: str,
    model: ModelAdapter,
    space: _Space,
    budget: int | None,
    search_steps: int | None,
    seed: int,
    X_test: Any,
    n_uniform: int,
    true_model: Any,
    params: dict[str, Any],
) -> LabelOnlyExtractionResult:
    classes = np.asarray(model.classes_)
    if len(classes) != 2:
        raise ModelError(
            f"label-only line search extracts two-class models; this one has {len(classes)} "
            f"classes ({classes.tolist()[:5]})"
        )
    if search_steps is not None and search_steps < 0:
        raise ParameterError(f"search_steps must be >= 0, got {search_steps}")
    n_num = len(space.numeric)
    if n_num == 0:
        raise DataError("label-only line search needs at least one numeric column to move along")
    p = n_num + sum(len(v) - 1 for _, v in space.categories)
    needed = _PAIR_BATCH + _MIN_X0_STEPS + 2 + 3 * (p - 1)
    if budget is not None and budget < needed:
        raise QueryBudgetExceeded(
            f"label-only extraction of {p} design columns needs at least {needed} queries; "
            f"the budget is {budget}"
        )
    oracle = _Oracle(model, space, budget)
    start = time.perf_counter()
    found = _recover(oracle, p, search_steps, np.random.default_rng(seed))
    coef, intercept = found.coef, found.intercept
    wall = time.perf_counter() - start
    copy = ExtractedLinearModel(coef[None, :], [intercept], classes, space.design)

    judge = true_model if true_model is not None else model
    X_uniform = space.uniform(n_uniform, np.random.default_rng([seed, 1]))
    fid_test = fid_uniform = None
    try:
        fid_uniform = fidelity(copy, judge, X_uniform)
        if X_test is not None:
            fid_test = fidelity(copy, judge, X_test)
    except QueryBudgetExceeded:
        pass
    weight_error = _weight_error(true_model, space, X_uniform, coef, intercept)
    reference = space.numeric[found.reference]
    return LabelOnlyExtractionResult(
        attack="label_only_extraction",
        n_points=n_uniform,
        success_rate=fid_uniform if fid_uniform is not None else math.nan,
        queries=oracle.spent,
        budget=budget,
        wall_time_s=wall,
        params={**params, "seed": seed, "x0_steps": found.x0_steps},
        examples=[{"boundary_point": found.x0.tolist(), "reference": reference}],
        method=method,
        queries_to_extract=oracle.spent,
        fidelity_test=fid_test,
        fidelity_uniform=fid_uniform,
        max_abs_weight_error=weight_error,
        coef=[coef.tolist()],
        intercept=[intercept],
        classes=classes.tolist(),
        copy_model=copy,
        reference=reference,
        search_steps=found.steps,
        unbracketed=found.unbracketed,
    )


def _weight_error(
    true_model: Any, space: _Space, X_uniform: Any, coef: FloatArray, intercept: float
) -> float | None:
    """Largest gap between the unit-norm recovered and true parameters (evaluation only)."""
    if true_model is None or not hasattr(true_model, "decision_function") or len(X_uniform) == 0:
        return None
    design = (
        space.design.transform(X_uniform) if space.design is not None else np.asarray(X_uniform)
    )
    true_coef, true_intercept = _relative_true_parameters(true_model, X_uniform, design, 2)
    norm = float(np.linalg.norm(true_coef))
    if norm == 0.0:
        return None
    return float(
        max(
            np.abs(true_coef[0] / norm - coef).max(),
            abs(float(true_intercept[0]) / norm - intercept),
        )
    )


def extract_linear_labels(
    model: ModelAdapter,
    n_features: int,
    *,
    feature_box: tuple[ArrayLike, ArrayLike] = (-1.0, 1.0),
    budget: int | None = None,
    search_steps: int | None = None,
    seed: int = 0,
    X_test: ArrayLike | None = None,
    n_uniform: int = 1000,
    true_model: Any = None,
) -> LabelOnlyExtractionResult:
    """Steal a two-class linear model over numeric inputs from its labels alone.

    Lowd & Meek (2005) line search, as in Tramèr et al. (2016) §6: a boundary point by
    bisection, then one lockstep line search per feature against a reference feature, and the
    hyperplane from the resulting boundary points. The default run fits its bisections to
    ``20 (d + 1)`` queries (16 steps a feature at most, 10 at least); the papers' retraining
    attacks need 50-100 x (d + 1).
    Probes may leave the feature box (a linear model answers anywhere).

    Parameters
    ----------
    model : ModelAdapter
        The target; only ``predict`` (or ``predict_proba``'s argmax) and ``classes_`` are read.
    n_features : int
        Input dimension ``d``.
    feature_box : (low, high)
        Scalars or arrays of shape (d,): where the first rows are drawn, the probe steps
        (half the box width, wider where the box had to grow to show both classes) and the
        uniform evaluation rows.
    budget : int, optional
        Most queries the attack may spend; the bisections get fewer steps to fit. Below the
        minimum (~3 per feature) :class:`~mlwarden.errors.QueryBudgetExceeded` is raised
        before any query.
    search_steps : int, optional
        Bisection steps per feature (default 16, or what the budget allows).
    seed : int
        Seed of the first rows.
    X_test : array, optional
        Rows on which to report fidelity.
    n_uniform : int
        Uniform rows in the box on which to report fidelity.
    true_model : estimator, optional
        For evaluation only: judges fidelity instead of ``model`` and, through
        ``decision_function``, gives the weight error. The attack never reads it.

    Returns
    -------
    LabelOnlyExtractionResult
        Unit-norm ``coef`` and ``intercept``; ``copy_model`` predicts on arrays.
    """
    if n_features < 1:
        raise ParameterError(f"n_features must be >= 1, got {n_features}")
    low = _as_box(feature_box[0], n_features, "low")
    high = _as_box(feature_box[1], n_features, "high")
    if np.any(high < low):
        raise ParameterError("feature_box high must be >= low")
    space = _Space(
        [f"x{i}" for i in range(n_features)], None, np.zeros(0, dtype=np.int64), low, high
    )
    return _run(
        method="line_search_linear",
        model=model,
        space=space,
        budget=budget,
        search_steps=search_steps,
        seed=seed,
        X_test=None if X_test is None else np.asarray(X_test, dtype=np.float64),
        n_uniform=n_uniform,
        true_model=true_model,
        params={"n_features": n_features, "low": low.tolist(), "high": high.tolist()},
    )


def extract_linear_labels_pipeline(
    model: ModelAdapter,
    X_reference: pd.DataFrame,
    categorical: Sequence[str],
    *,
    budget: int | None = None,
    search_steps: int | None = None,
    seed: int = 0,
    X_test: pd.DataFrame | None = None,
    n_uniform: int = 1000,
    true_model: Any = None,
) -> LabelOnlyExtractionResult:
    """Steal a one-hot + linear pipeline over a table from its labels alone.

    The attacker knows the schema (read from ``X_reference``) and builds the design of
    :class:`OneHotDesign`: raw numerics plus one indicator per non-reference category; any
    affine scaling of the numerics keeps the model linear in it. Categoricals stay at their
    most frequent value while the boundary point is found; each other category is then a
    probe whose weight is read through the line search along a numeric reference column
    (Tramèr et al. 2016 §6). Needs at least one numeric column with a non-zero weight.

    Parameters
    ----------
    model : ModelAdapter
        The target, taking DataFrames.
    X_reference : DataFrame
        Rows showing the schema: numeric min-max ranges, category values.
    categorical : sequence of str
        The categorical columns (missing values are not categories: fill them first).
    budget, search_steps, seed, n_uniform, true_model
        As in :func:`extract_linear_labels`; the design has ``design.n_features`` columns.
    X_test : DataFrame, optional
        Rows on which to report fidelity.

    Returns
    -------
    LabelOnlyExtractionResult
        ``copy_model`` predicts on DataFrames.
    """
    design = OneHotDesign.from_reference(X_reference, categorical)
    values = X_reference[design.numeric].to_numpy(dtype=np.float64)
    if values.size and not np.all(np.isfinite(values)):
        raise DataError("numeric columns of the reference table must be finite")
    if len(X_reference) == 0:
        raise DataError("the reference table has no rows to read the schema from")
    low = values.min(axis=0) if design.numeric else np.zeros(0)
    high = values.max(axis=0) if design.numeric else np.zeros(0)
    anchor = np.asarray(
        [
            values_.index(str(X_reference[name].dropna().astype(str).mode().iloc[0]))
            for name, values_ in design.categories.items()
        ],
        dtype=np.int64,
    )
    space = _Space(design.numeric, design, anchor, low, high)
    return _run(
        method="line_search_onehot_pipeline",
        model=model,
        space=space,
        budget=budget,
        search_steps=search_steps,
        seed=seed,
        X_test=X_test,
        n_uniform=n_uniform,
        true_model=true_model,
        params={"numeric": design.numeric, "categorical": list(design.categories)},
    )
