"""Black-box model extraction by distillation: train a copy on the target's answers.

References: Tribhuvanesh Orekondy, Bernt Schiele, Mario Fritz, "Knockoff Nets: Stealing
Functionality of Black-Box Models", CVPR 2019 (query a black box with natural or random
inputs and train a knockoff on its answers; the query distribution matters); Florian Tramèr,
Fan Zhang, Ari Juels, Michael K. Reiter, Thomas Ristenpart, "Stealing Machine Learning Models
via Prediction APIs", USENIX Security 2016, §5 (retraining attacks with uniform queries,
label-only outputs need more queries).

Unlike equation solving, distillation works on any model and any output: the attacker sends
``max(budgets)`` rows, drawn uniformly over the input schema or taken from a public data set
of the same domain, and for each budget fits a surrogate on the first ``budget`` answers. Soft
labels (the returned probabilities, rounded or partial ones as the API gives them) train it
with a cross-entropy on soft targets, written as a weighted log loss over one copy of each row
per class; a label-only API gives hard labels. The result is a fidelity curve: how often the
copy agrees with the target as the thief pays for more queries.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from pydantic import BaseModel, Field

from mlwarden._tasks import task_map
from mlwarden.attacks._extraction import _labels
from mlwarden.attacks._noise import uniform_noise
from mlwarden.attacks._result import AttackResult
from mlwarden.errors import DataError, ParameterError, QueryBudgetExceeded
from mlwarden.models import HardenedModel, OutputMode

if TYPE_CHECKING:
    from mlwarden.data import TableSchema
    from mlwarden.models import ModelAdapter

__all__ = [
    "DEFAULT_BUDGETS",
    "DistillationPoint",
    "DistillationResult",
    "QuerySource",
    "Surrogate",
    "TabularSurrogate",
    "extract_distillation",
]

QuerySource = Literal["uniform", "public"]
"""Where the attacker's queries come from: uniform over the schema, or a public data set."""

DEFAULT_BUDGETS: tuple[int, ...] = (100, 200, 500, 1000, 2000, 5000, 10_000, 20_000)
_N_EXAMPLES = 3


class Surrogate(Protocol):
    """What distillation trains: a classifier fitted with per-row weights."""

    def fit(self, X: pd.DataFrame, y: np.ndarray, sample_weight: np.ndarray) -> Any: ...

    def predict(self, X: pd.DataFrame) -> np.ndarray: ...


class TabularSurrogate:
    """The default surrogate: histogram gradient boosting over mixed tabular columns.

    Categorical (non-numeric) columns are ordinal-encoded and handled natively by
    :class:`~sklearn.ensemble.HistGradientBoostingClassifier` (unknown and missing values
    become its missing category); numeric columns pass through unscaled. Why this and not an
    MLP on one-hot + scaled inputs: boosted trees fit both axis-aligned (tree) and smooth
    (logistic) targets well on tabular data, need no scaling, take sample weights (the soft
    labels), are deterministic with a seed, never stop on a convergence warning, and train
    on tens of thousands of rows in about a second on two cores. Early stopping is off so
    that a small budget is not split further for validation.

    Parameters
    ----------
    categorical : sequence of str
        The columns to treat as categories.
    seed : int
        Seed of the booster.
    max_iter : int
        Boosting iterations.
    n_threads : int, optional
        OpenMP threads for fitting and predicting (None: the library default, all cores).
        One by default: the fits are small (about a second for 40,000 weighted rows) and
        OpenMP threads that wait on busy shared cores can run ten times slower.
    """

    def __init__(
        self,
        categorical: Sequence[str],
        seed: int = 0,
        max_iter: int = 150,
        n_threads: int | None = 1,
    ) -> None:
        self.categorical = list(categorical)
        self.seed = seed
        self.max_iter = max_iter
        self.n_threads = n_threads
        self.pipeline_: Any = None

    def fit(self, X: pd.DataFrame, y: np.ndarray, sample_weight: np.ndarray) -> TabularSurrogate:
        """Fit on ``X`` with labels ``y`` weighted by ``sample_weight``."""
        from sklearn.compose import ColumnTransformer
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OrdinalEncoder

        numeric = [c for c in X.columns if c not in set(self.categorical)]
        encoder = OrdinalEncoder(
            handle_unknown="use_encoded_value",
            unknown_value=np.nan,
            encoded_missing_value=np.nan,
            dtype=np.float64,
        )
        prep = ColumnTransformer(
            [("categorical", encoder, self.categorical), ("numeric", "passthrough", numeric)]
        )
        booster = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            early_stopping=False,
            categorical_features=[True] * len(self.categorical) + [False] * len(numeric),
            random_state=self.seed,
        )
        self.pipeline_ = Pipeline([("prep", prep), ("booster", booster)])
        with self._threads():
            self.pipeline_.fit(X, y, booster__sample_weight=sample_weight)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted class labels."""
        with self._threads():
            return np.asarray(self.pipeline_.predict(X))

    def _threads(self) -> AbstractContextManager[Any]:
        from threadpoolctl import threadpool_limits

        if self.n_threads is None:
            return nullcontext()
        limits: AbstractContextManager[Any] = threadpool_limits(
            limits=self.n_threads, user_api="openmp"
        )
        return limits


class _Constant:
    """The copy when every answer so far names one class."""

    def __init__(self, label: Any) -> None:
        self.label = label

    def fit(self, X: pd.DataFrame, y: np.ndarray, sample_weight: np.ndarray) -> _Constant:
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.full(len(X), self.label, dtype=object)


class DistillationPoint(BaseModel):
    """The copy trained on the first ``budget`` answers.

    ``fidelity_test`` and ``fidelity_uniform`` are the shares of held-out test rows and of
    fresh uniform rows on which the copy predicts the target's label; ``accuracy_test`` is
    its accuracy on the test labels (None where not given or not evaluated).
    """

    budget: int
    fidelity_test: float | None
    fidelity_uniform: float | None
    accuracy_test: float | None
    fit_time_s: float


class DistillationResult(AttackResult):
    """A fidelity curve of distillation over query budgets.

    ``queries`` counts the rows the attack sent (exactly the largest budget of the curve
    unless the adapter refused a batch); ``evaluation_queries`` the rows sent to the target
    only to judge fidelity (0 with a ``true_model``). ``stopped_early`` says that the budget
    did not afford every requested budget, ``stop_reason`` why. ``success_rate`` is the last
    point's test fidelity (uniform fidelity without test rows; NaN for an empty curve).
    ``surrogate`` is the last copy (left out of dumps).
    """

    output_mode: OutputMode
    source: QuerySource
    soft_labels: bool
    curve: list[DistillationPoint]
    stopped_early: bool
    stop_reason: str | None
    evaluation_queries: int
    surrogate: Any = Field(default=None, exclude=True)

    def queries_to_fidelity(
        self, target: float, on: Literal["test", "uniform"] | None = None
    ) -> int | None:
        """The smallest budget whose copy reaches ``target`` fidelity, or None.

        Parameters
        ----------
        target : float
            Fidelity to reach, in [0, 1].
        on : {"test", "uniform"}, optional
            Which fidelity; default the test fidelity where evaluated, else the uniform one.
        """
        for point in self.curve:
            value = _pick(point, on)
            if value is not None and value >= target:
                return point.budget
        return None

    def final_fidelity(self, on: Literal["test", "uniform"] | None = None) -> float | None:
        """Fidelity of the copy at the largest budget reached (None for an empty curve)."""
        return _pick(self.curve[-1], on) if self.curve else None


def _pick(point: DistillationPoint, on: Literal["test", "uniform"] | None) -> float | None:
    if on == "uniform" or (on is None and point.fidelity_test is None):
        return point.fidelity_uniform
    return point.fidelity_test


def _check_budgets(budgets: Sequence[int]) -> list[int]:
    checked = sorted({int(b) for b in budgets})
    if not checked or checked[0] < 1:
        raise ParameterError(f"budgets must be positive numbers of queries, got {list(budgets)}")
    return checked


def _declared_budget(model: Any) -> int | None:
    """The adapter's query budget, where it declares one."""
    budget = getattr(model, "budget", None)
    return budget if isinstance(budget, int) and not isinstance(budget, bool) else None


def _uniform_rows(
    X_reference: pd.DataFrame, n: int, schema: TableSchema | None, seed: int
) -> pd.DataFrame:
    """Fresh uniform evaluation rows, from a seed stream apart from the query rows'."""
    stream = int(np.random.default_rng([seed, 1]).integers(2**31))
    return uniform_noise(X_reference, n, schema, stream)


def _query_rows(
    X_reference: pd.DataFrame,
    n: int,
    source: QuerySource,
    X_public: pd.DataFrame | None,
    schema: TableSchema | None,
    seed: int,
) -> pd.DataFrame:
    if source == "uniform":
        return uniform_noise(X_reference, n, schema, seed)
    if source != "public":
        raise ParameterError(f"source must be 'uniform' or 'public', got {source!r}")
    if X_public is None or len(X_public) == 0:
        raise DataError("the 'public' query source needs rows in X_public")
    missing = [c for c in X_reference.columns if c not in X_public.columns]
    if missing:
        raise DataError(f"X_public lacks the columns {missing}")
    rng = np.random.default_rng(seed)
    index = (
        rng.permutation(len(X_public))[:n]
        if len(X_public) >= n
        else rng.integers(0, len(X_public), n)  # too few public rows: with replacement
    )
    return X_public[list(X_reference.columns)].iloc[index].reset_index(drop=True)


def _training_set(
    X: pd.DataFrame, proba: np.ndarray, classes: np.ndarray, soft: bool
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Rows, labels and weights: one copy per class weighted by its probability (soft), or
    the argmax label with weight 1 (hard). Zero weights are dropped."""
    if not soft:
        return X, classes[np.argmax(proba, axis=1)], np.ones(len(X))
    k = proba.shape[1]
    weights = np.clip(proba, 0.0, None).T.ravel()
    keep = weights > 0
    rows = pd.concat([X] * k, ignore_index=True)[keep].reset_index(drop=True)
    return rows, np.repeat(classes, len(X))[keep], weights[keep]


def _mean_equal(a: np.ndarray, b: np.ndarray | None) -> float | None:
    if b is None:
        return None
    return float(np.mean(np.asarray(a) == np.asarray(b))) if len(a) else 1.0


def extract_distillation(
    model: ModelAdapter,
    X_reference: pd.DataFrame,
    *,
    X_test: pd.DataFrame | None = None,
    y_test: ArrayLike | None = None,
    schema: TableSchema | None = None,
    source: QuerySource = "uniform",
    X_public: pd.DataFrame | None = None,
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    batch_size: int = 1000,
    soft_labels: bool | None = None,
    make_surrogate: Callable[[pd.DataFrame], Surrogate] | None = None,
    n_uniform: int = 1000,
    true_model: Any = None,
    seed: int = 0,
) -> DistillationResult:
    """Steal any classifier by training a surrogate on its answers (Knockoff Nets).

    The attacker draws ``max(budgets)`` query rows (fewer where the adapter's declared budget
    affords less), sends them in batches of at most ``batch_size`` rows, one adapter call per
    batch and every budget on a batch boundary, so the adapter's count is exact. For each
    affordable budget it trains a fresh surrogate on the first ``budget`` answers and measures
    its agreement with the target. If the adapter refuses a batch
    (:class:`~mlwarden.errors.QueryBudgetExceeded`, e.g. a budget it does not declare), the
    curve stops at the last budget fully answered and the result says so. The surrogates are
    fitted through the current task runner (``mlwarden._tasks.use_runner``), in parallel where
    it has workers, with the same curve on each.

    Parameters
    ----------
    model : ModelAdapter
        The target; only ``predict_proba`` and ``classes_`` are used by the attack. A
        :class:`~mlwarden.models.HardenedModel` gives its output mode.
    X_reference : DataFrame
        Rows showing the input schema: columns, numeric ranges, categories; non-numeric
        columns are the surrogate's categorical ones.
    X_test, y_test : optional
        Held-out rows on which to report fidelity, and their true labels for accuracy.
    schema : TableSchema, optional
        Declared ranges and categories for uniform rows (else those observed in
        ``X_reference``).
    source : {"uniform", "public"}
        Uniform rows over the schema (:func:`mlwarden.attacks.uniform_noise`), or rows of
        ``X_public``, a public data set of the same domain (sampled with replacement when it
        has fewer rows than needed).
    budgets : sequence of int
        Numbers of answers to train on; default 100 ... 20,000.
    batch_size : int
        Most rows per adapter call.
    soft_labels : bool, optional
        Train on the returned probabilities (default: unless the output mode is ``"label"``).
    make_surrogate : callable, optional
        ``make_surrogate(X_reference)`` returns an unfitted :class:`Surrogate`; default a
        :class:`TabularSurrogate`.
    n_uniform : int
        Fresh uniform rows (never queried by the attack) on which to report fidelity.
    true_model : object with ``predict``, optional
        For evaluation only: gives the labels fidelity is judged against, sparing the
        target's budget. Without it the target is queried for them after the attack (counted
        in ``evaluation_queries``; fidelity is None if its budget refuses).
    seed : int
        Seed of the query rows, the evaluation rows and the default surrogate.

    Returns
    -------
    DistillationResult
    """
    if batch_size < 1:
        raise ParameterError(f"batch_size must be >= 1, got {batch_size}")
    if n_uniform < 1:
        raise ParameterError(f"n_uniform must be >= 1, got {n_uniform}")
    requested = _check_budgets(budgets)
    output_mode: OutputMode = model.mode if isinstance(model, HardenedModel) else "probabilities"
    soft = soft_labels if soft_labels is not None else output_mode != "label"
    if make_surrogate is None:
        categorical = [
            str(c) for c in X_reference.columns if not pd.api.types.is_numeric_dtype(X_reference[c])
        ]

        def make_surrogate(_: pd.DataFrame) -> Surrogate:
            return TabularSurrogate(categorical, seed=seed)

    start = time.perf_counter()
    stop_reason: str | None = None
    declared = _declared_budget(model)
    remaining = None if declared is None else max(declared - model.queries, 0)
    affordable = [b for b in requested if remaining is None or b <= remaining]
    if len(affordable) < len(requested):
        stop_reason = (
            f"the query budget leaves {remaining} queries: budgets above "
            f"{affordable[-1] if affordable else 0} dropped"
        )
    n_rows = affordable[-1] if affordable else 0
    queries = _query_rows(X_reference, n_rows, source, X_public, schema, seed)

    cuts = sorted(set(affordable) | set(range(batch_size, n_rows, batch_size)))
    classes = np.asarray(model.classes_)
    answers: list[np.ndarray] = []
    answered, before = 0, model.queries
    for cut in cuts:
        try:
            answers.append(np.asarray(model.predict_proba(queries.iloc[answered:cut])))
        except QueryBudgetExceeded as error:
            stop_reason = f"the adapter refused a batch after {answered} queries: {error}"
            break
        answered = cut
    spent = model.queries - before
    proba = np.vstack(answers) if answers else np.zeros((0, len(classes)))
    reached = [b for b in affordable if b <= answered]

    judge = true_model if true_model is not None else model
    eval_before = model.queries
    X_uniform = _uniform_rows(X_reference, n_uniform, schema, seed)
    judged_test: np.ndarray | None = None
    judged_uniform: np.ndarray | None = None
    if reached:
        try:
            judged_uniform = _labels(judge, X_uniform)
            if X_test is not None:
                judged_test = _labels(judge, X_test)
        except QueryBudgetExceeded:
            pass
    evaluation_queries = model.queries - eval_before
    truth = None if y_test is None or X_test is None else np.asarray(y_test)

    def fit_point(budget: int) -> tuple[DistillationPoint, Any]:
        fit_start = time.perf_counter()
        rows, labels, weights = _training_set(
            queries.iloc[:budget].reset_index(drop=True), proba[:budget], classes, soft
        )
        present = np.unique(labels.astype(str))
        if len(present) < 2:
            surrogate: Any = _Constant(labels[0])
        else:
            surrogate = make_surrogate(X_reference)
            surrogate.fit(rows, labels, sample_weight=weights)
        fit_time = time.perf_counter() - fit_start
        test_pred = surrogate.predict(X_test) if X_test is not None else None
        point = DistillationPoint(
            budget=budget,
            fidelity_test=(_mean_equal(test_pred, judged_test) if test_pred is not None else None),
            fidelity_uniform=_mean_equal(surrogate.predict(X_uniform), judged_uniform),
            accuracy_test=_mean_equal(test_pred, truth) if test_pred is not None else None,
            fit_time_s=fit_time,
        )
        return point, surrogate

    # The surrogates of the curve are independent fits on prefixes of the same answers; the
    # largest goes first, so that parallel workers finish together (longest job first).
    fitted = task_map(fit_point, reached[::-1])[::-1]
    curve = [point for point, _ in fitted]
    surrogate = fitted[-1][1] if fitted else None
    last = curve[-1] if curve else None
    final = None if last is None else _pick(last, None)
    examples = [
        {"query": i, "answer": proba[i].tolist()} for i in range(min(_N_EXAMPLES, len(proba)))
    ]
    return DistillationResult(
        attack="distillation_extraction",
        n_points=len(X_test) if X_test is not None else n_uniform,
        success_rate=final if final is not None else math.nan,
        queries=spent,
        budget=declared,
        wall_time_s=time.perf_counter() - start,
        params={
            "budgets": requested,
            "batch_size": batch_size,
            "n_uniform": n_uniform,
            "seed": seed,
        },
        examples=examples,
        output_mode=output_mode,
        source=source,
        soft_labels=soft,
        curve=curve,
        stopped_early=stop_reason is not None,
        stop_reason=stop_reason,
        evaluation_queries=evaluation_queries,
        surrogate=surrogate,
    )
