"""Equation-solving extraction of logistic and softmax regression through a prediction API.

Reference: Florian Tramèr, Fan Zhang, Ari Juels, Michael K. Reiter, Thomas Ristenpart,
"Stealing Machine Learning Models via Prediction APIs", USENIX Security 2016, §4.1
(equation-solving attacks) and §4.1.1 (one-hot "feature extraction").

A logistic regression answers ``p = sigmoid(w.x + b)``, so ``log(p1 / p0) = w.x + b`` is
linear in the ``d + 1`` unknowns: ``d + 1`` answers at affinely independent points pin them
down exactly. A softmax regression over ``k`` classes answers ``p_i ∝ exp(w_i.x + b_i)``, so
``log(p_i / p_0) = (w_i - w_0).x + (b_i - b_0)``: the same ``d + 1`` points give all ``k - 1``
relative weight vectors at once. The softmax is invariant to a shared offset, so the copy
keeps class 0's weights at zero and predicts exactly what the target predicts.

The attack only calls ``model.predict_proba`` (and reads ``model.classes_``); an optional
``true_model`` is used *for evaluation only* (fidelity and the weight error).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from pydantic import Field

from mlwarden.attacks._result import AttackResult
from mlwarden.errors import DataError, ParameterError, QueryBudgetExceeded
from mlwarden.models import ModelAdapter

__all__ = [
    "ExtractedLinearModel",
    "ExtractionResult",
    "OneHotDesign",
    "extract_logistic",
    "extract_logistic_pipeline",
    "fidelity",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Probabilities are clipped to [_FLOOR, 1] before the logarithm so that an answer that
# underflowed to 0.0 gives a finite (wrong) equation instead of -inf; such rows are flagged
# unusable by the ``min_proba`` test below and queried again closer to the anchor.
_FLOOR = float(np.finfo(np.float64).tiny)
# A binary API usually returns p0 = 1 - p1, so the smaller probability carries an absolute
# rounding error of ~1e-16 and a relative one of ~1e-16 / p: below 1e-6 the logit would be
# off by more than ~1e-10. A softmax computes each probability with relative precision, so
# only an underflow (or near-underflow) makes a row unusable.
_MIN_PROBA_BINARY = 1e-6
_MIN_PROBA_MULTICLASS = 1e-250
# Re-draw rounds for saturated rows; each halves the spread of the query box around the anchor.
_MAX_ROUNDS = 30
_N_EXAMPLES = 3

# A sampler draws query rows for the given slots at the given spread: it returns what is sent
# to the model and the matching rows of the design matrix (without the intercept column).
Sampler = Callable[[IntArray, float, np.random.Generator], tuple[Any, FloatArray]]


class ExtractedLinearModel:
    """A stolen logistic / softmax regression: predicts from the recovered parameters.

    Parameters
    ----------
    coef : array of shape (1, p) for two classes, (k, p) for k > 2
        For two classes, ``w1 - w0``; for more, ``w_i - w_0`` (row 0 is zero).
    intercept : array of shape (1,) or (k,)
        The matching intercept differences.
    classes : array of shape (k,)
        Class labels in the target's ``predict_proba`` column order.
    design : OneHotDesign, optional
        Maps a DataFrame to the design matrix the parameters act on; without it inputs are
        numeric arrays used as they are.
    """

    def __init__(
        self,
        coef: ArrayLike,
        intercept: ArrayLike,
        classes: ArrayLike,
        design: OneHotDesign | None = None,
    ) -> None:
        self.coef_: FloatArray = np.atleast_2d(np.asarray(coef, dtype=np.float64))
        self.intercept_: FloatArray = np.atleast_1d(np.asarray(intercept, dtype=np.float64))
        self._classes = np.asarray(classes)
        self.design = design

    @property
    def classes_(self) -> np.ndarray:
        """Class labels in the column order of :meth:`predict_proba`."""
        return self._classes

    def _design(self, X: Any) -> FloatArray:
        if self.design is not None:
            return self.design.transform(X)
        return np.asarray(X, dtype=np.float64)

    def decision_function(self, X: Any) -> FloatArray:
        """Linear scores: shape (n,) for two classes (the logit), (n, k) otherwise."""
        scores = self._design(X) @ self.coef_.T + self.intercept_
        return np.asarray(scores[:, 0] if len(self._classes) == 2 else scores)

    def predict_proba(self, X: Any) -> FloatArray:
        """Class probabilities, one row per input row."""
        scores = self.decision_function(X)
        if len(self._classes) == 2:
            # Numerically stable sigmoid on both sides.
            positive = np.exp(-np.logaddexp(0.0, -scores))
            negative = np.exp(-np.logaddexp(0.0, scores))
            return np.column_stack([negative, positive])
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        return np.asarray(shifted / shifted.sum(axis=1, keepdims=True))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels."""
        return np.asarray(self._classes[np.argmax(self.predict_proba(X), axis=1)])


class OneHotDesign:
    """The attacker's own one-hot encoding of a table schema (Tramèr et al. §4.1.1).

    Numeric columns are kept raw (a StandardScaler in the target is affine, so the logit stays
    linear in them); each categorical column becomes one indicator per category except its
    first (sorted) one, the reference, whose weight folds into the intercept. A category
    outside the schema encodes like the reference.

    Parameters
    ----------
    columns : sequence of str
        All input columns in the order the target expects.
    numeric : sequence of str
        The numeric columns.
    categories : dict of str to list of str
        For each categorical column, its values; the first is the reference.
    """

    def __init__(
        self, columns: Sequence[str], numeric: Sequence[str], categories: dict[str, list[str]]
    ) -> None:
        self.columns = list(columns)
        self.numeric = list(numeric)
        self.categories = {name: list(values) for name, values in categories.items()}
        for name, values in self.categories.items():
            if not values:
                raise DataError(f"categorical column {name!r} has no categories")
        self.n_features = len(self.numeric) + sum(len(v) - 1 for v in self.categories.values())

    @classmethod
    def from_reference(cls, X_reference: pd.DataFrame, categorical: Sequence[str]) -> OneHotDesign:
        """Read the schema (columns, numeric columns, sorted category values) from a table."""
        missing = [c for c in categorical if c not in X_reference.columns]
        if missing:
            raise DataError(f"categorical columns not in the reference table: {missing}")
        numeric = [c for c in X_reference.columns if c not in set(categorical)]
        categories = {
            c: sorted(str(v) for v in X_reference[c].dropna().unique()) for c in categorical
        }
        return cls([str(c) for c in X_reference.columns], numeric, categories)

    def transform(self, X: pd.DataFrame) -> FloatArray:
        """The design matrix: raw numerics, then the non-reference indicators per column."""
        parts: list[FloatArray] = [X[self.numeric].to_numpy(dtype=np.float64)]
        for name, values in self.categories.items():
            column = X[name].astype(object).to_numpy()
            parts.append(
                np.column_stack([column == value for value in values[1:]]).astype(np.float64)
                if len(values) > 1
                else np.zeros((len(X), 0))
            )
        return np.asarray(np.hstack(parts), dtype=np.float64)


class ExtractionResult(AttackResult):
    """What equation-solving extraction recovered and how faithful the copy is.

    ``queries_to_extract`` counts the rows sent to the target to solve for the weights (also
    ``queries``); evaluation queries are not counted. ``fidelity_test`` and
    ``fidelity_uniform`` are the shares of test rows and of uniform random inputs on which the
    copy predicts the target's label (None where not evaluated). ``max_abs_weight_error``
    compares the recovered parameters (intercept included) with the true ones in the same
    parametrization, only when a ``true_model`` was given for evaluation. ``success_rate`` is
    ``fidelity_uniform`` (NaN if it could not be evaluated). ``copy_model`` is the
    :class:`ExtractedLinearModel` (left out of dumps).
    """

    method: str
    queries_to_extract: int
    fidelity_test: float | None
    fidelity_uniform: float | None
    max_abs_weight_error: float | None
    coef: list[list[float]]
    intercept: list[float]
    classes: list[Any]
    copy_model: Any = Field(default=None, exclude=True)


def fidelity(copy: Any, model: Any, X: Any) -> float:
    """Share of rows of ``X`` on which ``copy`` and ``model`` predict the same label.

    Parameters
    ----------
    copy, model : objects with ``predict`` (or ``predict_proba`` and ``classes_``)
        The extracted copy and the target (each call on ``model`` spends its queries).
    X : array or DataFrame
        The rows to compare on.

    Returns
    -------
    float
        Agreement in [0, 1]; 1.0 for an empty ``X``.
    """
    if len(X) == 0:
        return 1.0
    return float(np.mean(_labels(copy, X) == _labels(model, X)))


def _labels(model: Any, X: Any) -> np.ndarray:
    """``model.predict``, or the argmax of ``predict_proba`` for an API without it."""
    if hasattr(model, "predict"):
        return np.asarray(model.predict(X))
    proba = np.asarray(model.predict_proba(X))
    return np.asarray(np.asarray(model.classes_)[np.argmax(proba, axis=1)])


def _logit_targets(proba: FloatArray) -> FloatArray:
    """``log(p_i / p_0)`` for i = 1..k-1, from probabilities clipped to [tiny, 1]."""
    logp = np.log(np.clip(proba, _FLOOR, 1.0))
    return np.asarray(logp[:, 1:] - logp[:, :1])


def _solve(design: FloatArray, proba: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Least squares (exact with p + 1 rows) for the relative weights and intercepts."""
    system = np.hstack([design, np.ones((len(design), 1))])
    solution, *_ = np.linalg.lstsq(system, _logit_targets(proba), rcond=None)
    coef = solution[:-1].T  # (k - 1, p)
    intercept = solution[-1]  # (k - 1,)
    if proba.shape[1] > 2:
        coef = np.vstack([np.zeros((1, coef.shape[1])), coef])
        intercept = np.concatenate([[0.0], intercept])
    return np.asarray(coef, dtype=np.float64), np.asarray(intercept, dtype=np.float64)


def _collect(
    model: ModelAdapter,
    sampler: Sampler,
    n_slots: int,
    budget: int | None,
    min_proba: float,
    rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray, int]:
    """Query one usable row per slot, re-drawing saturated ones at half the spread.

    Returns the design rows, their probabilities and the queries spent. Slots still
    saturated when the rounds or the budget run out keep their last (clipped) answer.
    """
    design: FloatArray | None = None
    proba: FloatArray | None = None
    pending: IntArray = np.arange(n_slots, dtype=np.int64)
    spread, spent = 1.0, 0
    for _ in range(_MAX_ROUNDS):
        if budget is not None and spent + len(pending) > budget:
            break
        queries, rows = sampler(pending, spread, rng)
        try:
            answer = np.asarray(model.predict_proba(queries), dtype=np.float64)
        except QueryBudgetExceeded:
            if design is None:
                raise
            break
        spent += len(pending)
        if design is None or proba is None:
            design = np.empty((n_slots, rows.shape[1]))
            proba = np.empty((n_slots, answer.shape[1]))
        design[pending] = rows
        proba[pending] = answer
        pending = pending[answer.min(axis=1) < min_proba]
        if len(pending) == 0:
            break
        spread /= 2.0
    assert design is not None and proba is not None
    return design, proba, spent


def _relative_true_parameters(
    true_model: Any, queries: Any, design: FloatArray, n_classes: int
) -> tuple[FloatArray, FloatArray]:
    """The true parameters in the copy's parametrization, from exact scores (evaluation)."""
    scores = np.asarray(true_model.decision_function(queries), dtype=np.float64)
    targets = scores.reshape(-1, 1) if scores.ndim == 1 else scores[:, 1:] - scores[:, :1]
    system = np.hstack([design, np.ones((len(design), 1))])
    solution, *_ = np.linalg.lstsq(system, targets, rcond=None)
    coef, intercept = solution[:-1].T, solution[-1]
    if n_classes > 2:
        coef = np.vstack([np.zeros((1, coef.shape[1])), coef])
        intercept = np.concatenate([[0.0], intercept])
    return np.asarray(coef), np.asarray(intercept)


def _run(
    *,
    method: str,
    model: ModelAdapter,
    n_unknowns: int,
    sampler: Sampler,
    uniform: Callable[[int, np.random.Generator], Any],
    copy_design: OneHotDesign | None,
    budget: int | None,
    seed: int,
    extra_queries: int,
    min_proba: float | None,
    X_test: Any,
    n_uniform: int,
    true_model: Any,
    params: dict[str, Any],
) -> ExtractionResult:
    if extra_queries < 0:
        raise ParameterError(f"extra_queries must be >= 0, got {extra_queries}")
    n_slots = n_unknowns + extra_queries
    if budget is not None and budget < n_slots:
        raise QueryBudgetExceeded(
            f"equation solving needs {n_unknowns} queries (+{extra_queries} extra); "
            f"the budget is {budget}"
        )
    classes = np.asarray(model.classes_)
    if min_proba is None:
        min_proba = _MIN_PROBA_BINARY if len(classes) == 2 else _MIN_PROBA_MULTICLASS
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    design, proba, spent = _collect(model, sampler, n_slots, budget, min_proba, rng)
    coef, intercept = _solve(design, proba)
    wall = time.perf_counter() - start
    copy = ExtractedLinearModel(coef, intercept, classes, copy_design)

    judge = true_model if true_model is not None else model
    eval_rng = np.random.default_rng([seed, 1])
    X_uniform = uniform(n_uniform, eval_rng)
    fid_test = fid_uniform = None
    try:
        fid_uniform = fidelity(copy, judge, X_uniform)
        if X_test is not None:
            fid_test = fidelity(copy, judge, X_test)
    except QueryBudgetExceeded:
        pass
    weight_error = None
    if true_model is not None and hasattr(true_model, "decision_function"):
        basis_queries, basis_design = sampler(
            np.arange(n_unknowns, dtype=np.int64), 1.0, np.random.default_rng([seed, 2])
        )
        true_coef, true_intercept = _relative_true_parameters(
            true_model, basis_queries, basis_design, len(classes)
        )
        weight_error = float(
            max(np.abs(true_coef - coef).max(), np.abs(true_intercept - intercept).max())
        )
    examples = [
        {"query": i, "probabilities": proba[i].tolist()} for i in range(min(_N_EXAMPLES, n_slots))
    ]
    return ExtractionResult(
        attack="equation_solving_extraction",
        n_points=n_uniform,
        success_rate=fid_uniform if fid_uniform is not None else math.nan,
        queries=spent,
        budget=budget,
        wall_time_s=wall,
        params={**params, "seed": seed, "extra_queries": extra_queries, "min_proba": min_proba},
        examples=examples,
        method=method,
        queries_to_extract=spent,
        fidelity_test=fid_test,
        fidelity_uniform=fid_uniform,
        max_abs_weight_error=weight_error,
        coef=coef.tolist(),
        intercept=intercept.tolist(),
        classes=classes.tolist(),
        copy_model=copy,
    )


def _as_box(bound: ArrayLike, n_features: int, name: str) -> FloatArray:
    array = np.broadcast_to(np.asarray(bound, dtype=np.float64), (n_features,)).copy()
    if not np.all(np.isfinite(array)):
        raise ParameterError(f"feature_box {name} bound must be finite")
    return array


def extract_logistic(
    model: ModelAdapter,
    n_features: int,
    *,
    feature_box: tuple[ArrayLike, ArrayLike] = (-1.0, 1.0),
    anchor: ArrayLike | None = None,
    budget: int | None = None,
    seed: int = 0,
    extra_queries: int = 0,
    min_proba: float | None = None,
    X_test: ArrayLike | None = None,
    n_uniform: int = 1000,
    true_model: Any = None,
) -> ExtractionResult:
    """Steal a logistic or softmax regression over numeric inputs by solving equations.

    The attacker queries ``predict_proba`` at ``n_features + 1 + extra_queries`` random points
    of the feature box and solves ``log(p_i / p_0) = (w_i - w_0).x + (b_i - b_0)`` for all
    classes at once (exactly with no extra queries, by least squares otherwise). Answers whose
    smallest probability is below ``min_proba`` carry too little precision; those points are
    drawn again with the box shrunk by half around ``anchor`` (more queries, within the
    budget). Tramèr et al., USENIX Security 2016, §4.1.

    Parameters
    ----------
    model : ModelAdapter
        The target; only ``predict_proba`` and ``classes_`` are used.
    n_features : int
        Input dimension ``d``.
    feature_box : (low, high)
        Scalars or arrays of shape (d,): where queries are drawn.
    anchor : array of shape (d,), optional
        Centre the box shrinks towards when answers saturate (default: the box centre).
    budget : int, optional
        Most queries the extraction may spend. A budget below ``d + 1 + extra_queries``
        raises :class:`~mlwarden.errors.QueryBudgetExceeded` before any query is sent.
    seed : int
        Seed of the query points.
    extra_queries : int
        Queries beyond ``d + 1``, for a least-squares fit.
    min_proba : float, optional
        Default 1e-6 for two classes (``p0 = 1 - p1`` loses relative precision), 1e-250 for
        more (a softmax only loses it on underflow).
    X_test : array, optional
        Test rows on which to report fidelity.
    n_uniform : int
        Uniform random rows in the box on which to report fidelity.
    true_model : estimator, optional
        For evaluation only: predicts the labels fidelity is judged against (instead of
        ``model``, sparing its budget) and, through ``decision_function``, gives the weight
        error. The attack never reads it.

    Returns
    -------
    ExtractionResult
        With the recovered parameters and ``copy_model``, an :class:`ExtractedLinearModel`.
    """
    if n_features < 1:
        raise ParameterError(f"n_features must be >= 1, got {n_features}")
    low = _as_box(feature_box[0], n_features, "low")
    high = _as_box(feature_box[1], n_features, "high")
    if np.any(high < low):
        raise ParameterError("feature_box high must be >= low")
    centre = (low + high) / 2.0 if anchor is None else _as_box(anchor, n_features, "anchor")
    if np.any(centre < low) or np.any(centre > high):
        raise ParameterError("anchor must lie inside the feature box")

    def sampler(slots: IntArray, spread: float, rng: np.random.Generator) -> tuple[Any, Any]:
        points = centre + spread * (rng.uniform(low, high, (len(slots), n_features)) - centre)
        return points, points

    def uniform(n: int, rng: np.random.Generator) -> FloatArray:
        return np.asarray(rng.uniform(low, high, (n, n_features)))

    return _run(
        method="equation_solving_logistic",
        model=model,
        n_unknowns=n_features + 1,
        sampler=sampler,
        uniform=uniform,
        copy_design=None,
        budget=budget,
        seed=seed,
        extra_queries=extra_queries,
        min_proba=min_proba,
        X_test=None if X_test is None else np.asarray(X_test, dtype=np.float64),
        n_uniform=n_uniform,
        true_model=true_model,
        params={"n_features": n_features, "low": low.tolist(), "high": high.tolist()},
    )


def extract_logistic_pipeline(
    model: ModelAdapter,
    X_reference: pd.DataFrame,
    categorical: Sequence[str],
    *,
    budget: int | None = None,
    seed: int = 0,
    extra_queries: int = 0,
    min_proba: float | None = None,
    X_test: pd.DataFrame | None = None,
    n_uniform: int = 1000,
    true_model: Any = None,
) -> ExtractionResult:
    """Steal a one-hot + linear pipeline over a table by solving equations (Tramèr §4.1.1).

    The attacker knows the input schema (read from ``X_reference``: columns, numeric ranges,
    category values) but not the target's encoding or scaling. It builds its own design
    matrix: raw numerics plus one indicator per non-reference category (the first sorted
    value of each column is the reference, which removes the collinearity with the
    intercept). With ``m`` numeric columns it sends ``m + 1`` rows with every categorical at
    its reference and random numerics, then one row per non-reference category (that
    category set, the others at reference): a full-rank system, solved exactly. Any affine
    preprocessing of the numerics (a StandardScaler) keeps the model linear in this design,
    so the copy is exact. Saturated answers are re-drawn with the numerics shrunk towards the
    reference medians.

    Parameters
    ----------
    model : ModelAdapter
        The target, taking DataFrames; only ``predict_proba`` and ``classes_`` are used.
    X_reference : DataFrame
        Rows showing the schema. Numeric queries are drawn within one standard deviation of
        each column's median (clipped to its min and max); uniform evaluation rows use the
        full min-max range.
    categorical : sequence of str
        The categorical columns (missing values are not categories: fill them first).
    budget, seed, extra_queries, min_proba, n_uniform, true_model
        As in :func:`extract_logistic`; the needed number of queries is
        ``design.n_features + 1``. Extra queries use random categories.
    X_test : DataFrame, optional
        Test rows on which to report fidelity.

    Returns
    -------
    ExtractionResult
        ``copy_model`` predicts on DataFrames.
    """
    design = OneHotDesign.from_reference(X_reference, categorical)
    numeric = design.numeric
    values = X_reference[numeric].to_numpy(dtype=np.float64)
    if values.size and not np.all(np.isfinite(values)):
        raise DataError("numeric columns of the reference table must be finite")
    low = values.min(axis=0) if len(numeric) else np.zeros(0)
    high = values.max(axis=0) if len(numeric) else np.zeros(0)
    centre = np.median(values, axis=0) if len(numeric) else np.zeros(0)
    # Queries start within one standard deviation of the median (inside [min, max]): wide
    # enough for affine independence, narrow enough that few answers saturate.
    spread_ = values.std(axis=0) if len(numeric) else np.zeros(0)
    q_low = np.maximum(low, centre - spread_)
    q_high = np.minimum(high, centre + spread_)
    n_base = len(numeric) + 1
    # Slot plan: n_base rows at the reference categories, then one per non-reference category.
    plan: list[tuple[str, str] | None] = [None] * n_base
    for name, cats in design.categories.items():
        plan.extend((name, value) for value in cats[1:])
    n_unknowns = design.n_features + 1

    def frame(numbers: FloatArray, cats: dict[str, list[str]]) -> pd.DataFrame:
        data: dict[str, Any] = {name: numbers[:, j] for j, name in enumerate(numeric)}
        data.update({name: np.asarray(col, dtype=object) for name, col in cats.items()})
        return pd.DataFrame(data, columns=design.columns)

    def sampler(
        slots: IntArray, spread: float, rng: np.random.Generator
    ) -> tuple[pd.DataFrame, FloatArray]:
        numbers = centre + spread * (
            rng.uniform(q_low, q_high, (len(slots), len(numeric))) - centre
        )
        cats: dict[str, list[str]] = {name: [] for name in design.categories}
        for slot in slots:
            step = plan[slot] if slot < len(plan) else "random"
            for name, options in design.categories.items():
                if step == "random":
                    cats[name].append(options[int(rng.integers(len(options)))])
                elif step is not None and step[0] == name:
                    cats[name].append(step[1])
                else:
                    cats[name].append(options[0])
        queries = frame(numbers, cats)
        return queries, design.transform(queries)

    def uniform(n: int, rng: np.random.Generator) -> pd.DataFrame:
        numbers = rng.uniform(low, high, (n, len(numeric)))
        cats = {
            name: [options[i] for i in rng.integers(len(options), size=n)]
            for name, options in design.categories.items()
        }
        return frame(numbers, cats)

    return _run(
        method="equation_solving_onehot_pipeline",
        model=model,
        n_unknowns=n_unknowns,
        sampler=sampler,
        uniform=uniform,
        copy_design=design,
        budget=budget,
        seed=seed,
        extra_queries=extra_queries,
        min_proba=min_proba,
        X_test=X_test,
        n_uniform=n_uniform,
        true_model=true_model,
        params={"numeric": numeric, "categorical": list(design.categories)},
    )
