"""Output hardening, measured: how many more queries each output mode costs a model thief.

References: Florian Tramèr, Fan Zhang, Ari Juels, Michael K. Reiter, Thomas Ristenpart,
"Stealing Machine Learning Models via Prediction APIs", USENIX Security 2016, §4.1
(equation solving), §6 (label-only line search) and §8 (rounding and label-only
countermeasures, which slow extraction down but do not stop it); Daniel Lowd, Christopher
Meek, "Adversarial Learning", KDD 2005 (boundary line search); Tribhuvanesh Orekondy, Bernt
Schiele, Mario Fritz, "Knockoff Nets", CVPR 2019 (distillation of any black box).

For each output mode of :class:`~mlwarden.models.HardenedModel` the target is attacked three
times: by equation solving (logistic-like targets only, and only where the output still
carries the probabilities the equations need), by label-only line search (two-class linear
targets, any output: every mode returns the label) and by distillation (any target, any
output). Each attack yields fidelity against queries spent; the table gives the queries
needed to reach each fidelity target and the ratio to the same attack against full
probabilities, so that a report can say "label-only outputs cost the thief N times more
queries" with the strongest attack each output allows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from pydantic import BaseModel

from mlwarden.attacks._distillation import (
    DEFAULT_BUDGETS,
    QuerySource,
    Surrogate,
    _check_budgets,
    extract_distillation,
)
from mlwarden.attacks._extraction import (
    ExtractionResult,
    OneHotDesign,
    extract_logistic_pipeline,
)
from mlwarden.attacks._label_only import DEFAULT_STEPS, extract_linear_labels_pipeline
from mlwarden.errors import MlwardenError, ParameterError, QueryBudgetExceeded, UnknownNameError
from mlwarden.models import HardenedModel, ModelAdapter, OutputHardening, OutputMode, SklearnAdapter

if TYPE_CHECKING:
    from mlwarden.data import TableSchema

__all__ = [
    "FidelityCost",
    "HardeningAttack",
    "HardeningCostRow",
    "HardeningCostTable",
    "hardening_cost",
]

HardeningAttack = Literal["equation_solving", "line_search", "distillation"]
"""The extraction attacks run against each output mode."""

ALL_MODES: tuple[OutputMode, ...] = ("probabilities", "rounded", "top1", "label")


class FidelityCost(BaseModel):
    """Queries an attack needed to reach ``target`` fidelity on the test rows.

    ``queries`` is None where the target was not reached within the budgets; ``cost_ratio``
    divides it by the same attack's queries against full probabilities (None where either is
    missing).
    """

    target: float
    queries: int | None
    cost_ratio: float | None


class HardeningCostRow(BaseModel):
    """One attack against one output mode.

    ``applicable`` is False (with the ``reason``) where the attack cannot use the output;
    ``reason`` also carries an error that stopped an applicable attack. ``curve`` lists
    (queries, test fidelity) pairs as the attack spent more; ``final_fidelity`` is the last
    one; ``queries_spent`` counts every row the attack sent, over all its runs.
    """

    mode: OutputMode
    attack: HardeningAttack
    applicable: bool
    reason: str | None
    costs: list[FidelityCost]
    final_fidelity: float | None
    queries_spent: int
    wall_time_s: float
    curve: list[tuple[int, float]]

    def queries_to(self, target: float) -> int | None:
        """Queries to reach ``target`` fidelity (None where not reached or not measured)."""
        for cost in self.costs:
            if math.isclose(cost.target, target):
                return cost.queries
        return None


class HardeningCostTable(BaseModel):
    """Per output mode and attack: queries to each fidelity target and the cost ratio."""

    rows: list[HardeningCostRow]
    fidelity_targets: list[float]
    budgets: list[int]
    decimals: int
    source: QuerySource
    evaluated_on: Literal["test"] = "test"

    def row(self, mode: OutputMode, attack: HardeningAttack) -> HardeningCostRow:
        """The row of ``attack`` against ``mode``."""
        for row in self.rows:
            if row.mode == mode and row.attack == attack:
                return row
        raise UnknownNameError(f"no row for mode {mode!r} and attack {attack!r}")

    def cheapest(self, mode: OutputMode, target: float) -> int | None:
        """Fewest queries any attack needed to reach ``target`` against ``mode``."""
        found = [
            q for row in self.rows if row.mode == mode and (q := row.queries_to(target)) is not None
        ]
        return min(found) if found else None

    def cost_ratio(self, mode: OutputMode, target: float) -> float | None:
        """How many times more queries the best attack needs against ``mode`` than against
        full probabilities to reach ``target`` (None where either was not reached)."""
        hardened, baseline = self.cheapest(mode, target), self.cheapest("probabilities", target)
        if hardened is None or baseline is None:
            return None
        return hardened / baseline


def _estimator(model: Any) -> Any:
    """The fitted estimator behind an adapter, where one can be seen."""
    while isinstance(model, HardenedModel):
        model = model.model
    return getattr(model, "estimator", model)


def _final_estimator(model: Any) -> Any:
    """The estimator behind an adapter, or the last step of its Pipeline."""
    from sklearn.pipeline import Pipeline

    estimator = _estimator(model)
    return estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator


def _is_logistic_like(model: Any) -> bool:
    """A logistic / softmax regression, alone or at the end of a Pipeline."""
    from sklearn.linear_model import LogisticRegression

    return isinstance(_final_estimator(model), LogisticRegression)


def _is_linear(model: Any) -> bool:
    """A linear classifier (weights in ``coef_``: logistic regression, linear SVM, SGD...),
    alone or at the end of a Pipeline; a kernel SVM's ``coef_`` raises, so it is not."""
    try:
        return getattr(_final_estimator(model), "coef_", None) is not None
    except AttributeError:
        return False


def _categorical_columns(X_reference: pd.DataFrame, schema: TableSchema | None) -> list[str]:
    columns = []
    for column in X_reference.columns:
        declared = schema.columns.get(column) if schema is not None else None
        numeric = (
            declared.is_numeric
            if declared is not None
            else pd.api.types.is_numeric_dtype(X_reference[column])
        )
        if not numeric:
            columns.append(str(column))
    return columns


def _costs(curve: Sequence[tuple[int, float]], targets: Sequence[float]) -> list[FidelityCost]:
    costs = []
    for target in targets:
        reached = [q for q, fid in curve if fid >= target]
        costs.append(
            FidelityCost(target=target, queries=min(reached) if reached else None, cost_ratio=None)
        )
    return costs


@dataclass(frozen=True)
class _Setting:
    """What every extraction attack of the table is run with, whatever the output mode."""

    X_reference: pd.DataFrame
    X_test: pd.DataFrame
    categorical: Sequence[str]
    budgets: Sequence[int]
    targets: Sequence[float]
    judge: Any
    n_uniform: int
    seed: int


_Run = tuple[list[tuple[int, float]], int, "str | None"]
"""An attack's (queries, test fidelity) curve, queries spent, and why it stopped early."""


_UNEVALUATED = "fidelity on the test rows could not be evaluated"


def _point(result: ExtractionResult) -> tuple[int, float] | None:
    """One run's (queries, test fidelity), None where the fidelity could not be evaluated."""
    fid = result.fidelity_test
    if fid is None or not math.isfinite(fid):
        return None
    return result.queries_to_extract, fid


def _equations(hardened: HardenedModel, setting: _Setting) -> _Run:
    """Equation solving with ever more extra queries (least squares) along the budgets.

    The first run sends the ``d + 1`` queries the exact solution needs; later runs send one of
    the budgets in all, the extra rows making a least-squares fit that averages the rounding
    error out. Runs stop once every fidelity target is reached. Rounded answers below
    ``10 ** -decimals`` carry no logit (they rounded to 0) and are re-drawn nearer the anchor.
    """
    mode, decimals = hardened.hardening.mode, hardened.hardening.decimals
    min_proba = None if mode == "probabilities" else 10.0**-decimals
    n_unknowns = (
        OneHotDesign.from_reference(setting.X_reference, setting.categorical).n_features + 1
    )
    totals = [n_unknowns] + [b for b in setting.budgets if b > n_unknowns]
    curve: list[tuple[int, float]] = []
    spent = 0
    for total in totals:
        before = hardened.queries
        try:
            result = extract_logistic_pipeline(
                hardened,
                setting.X_reference,
                setting.categorical,
                seed=setting.seed,
                extra_queries=total - n_unknowns,
                min_proba=min_proba,
                X_test=setting.X_test,
                n_uniform=setting.n_uniform,
                true_model=setting.judge,
            )
        except (MlwardenError, ValueError, np.linalg.LinAlgError) as error:
            spent += hardened.queries - before
            return curve, spent, f"equation solving failed with {total} queries: {error}"
        spent += result.queries_to_extract
        if (point := _point(result)) is None:
            return curve, spent, _UNEVALUATED
        curve.append(point)
        if point[1] >= max(setting.targets):
            break
    return curve, spent, None


def _line_search(hardened: HardenedModel, setting: _Setting) -> _Run:
    """Label-only line search within each budget, smallest first.

    Each run is a fresh attack that fits its bisections to its budget. Budgets too small for
    one probe per design column are skipped (nothing is queried); runs stop once every
    fidelity target is reached or a run had all the bisection steps it wanted (a larger
    budget would buy the same copy).
    """
    curve: list[tuple[int, float]] = []
    spent = 0
    refused: str | None = None
    for budget in setting.budgets:
        before = hardened.queries
        try:
            result = extract_linear_labels_pipeline(
                hardened,
                setting.X_reference,
                setting.categorical,
                budget=budget,
                seed=setting.seed,
                X_test=setting.X_test,
                n_uniform=setting.n_uniform,
                true_model=setting.judge,
            )
        except QueryBudgetExceeded as error:
            spent += hardened.queries - before
            refused = str(error)
            continue
        except (MlwardenError, ValueError, np.linalg.LinAlgError) as error:
            spent += hardened.queries - before
            return curve, spent, f"line search failed within {budget} queries: {error}"
        spent += result.queries_to_extract
        if (point := _point(result)) is None:
            return curve, spent, _UNEVALUATED
        curve.append(point)
        if point[1] >= max(setting.targets) or result.search_steps >= DEFAULT_STEPS:
            break
    return curve, spent, refused if not curve else None


def _measured(
    mode: OutputMode,
    attack: HardeningAttack,
    run: _Run,
    targets: Sequence[float],
    start: float,
) -> HardeningCostRow:
    """The row of an attack that ran: its (curve, queries spent, stop reason) and costs."""
    curve, spent, reason = run
    return HardeningCostRow(
        mode=mode,
        attack=attack,
        applicable=True,
        reason=reason,
        costs=_costs(curve, targets),
        final_fidelity=curve[-1][1] if curve else None,
        queries_spent=spent,
        wall_time_s=time.perf_counter() - start,
        curve=curve,
    )


def _equations_excuse(is_logistic: bool, mode: OutputMode, n_classes: int) -> str | None:
    """Why equation solving cannot run against ``mode`` (None where it can)."""
    if not is_logistic:
        return "the target is not a logistic or softmax regression"
    if mode == "label":
        return "label-only outputs carry no probabilities to solve for"
    if mode == "top1" and n_classes > 2:
        return f"top-1 outputs hide {n_classes - 1} of the {n_classes} probabilities"
    return None


def _line_search_excuse(is_linear: bool, n_classes: int) -> str | None:
    """Why the label-only line search cannot run (None where it can): any output has labels."""
    if not is_linear:
        return "the target is not a linear model"
    if n_classes != 2:
        return f"line search extracts two-class models, not {n_classes} classes"
    return None


def _not_applicable(mode: OutputMode, attack: HardeningAttack, reason: str) -> HardeningCostRow:
    return HardeningCostRow(
        mode=mode,
        attack=attack,
        applicable=False,
        reason=reason,
        costs=[],
        final_fidelity=None,
        queries_spent=0,
        wall_time_s=0.0,
        curve=[],
    )


def hardening_cost(
    model: ModelAdapter | Any,
    X_reference: pd.DataFrame,
    X_test: pd.DataFrame,
    *,
    y_test: ArrayLike | None = None,
    schema: TableSchema | None = None,
    categorical: Sequence[str] | None = None,
    modes: Sequence[OutputMode] = ALL_MODES,
    decimals: int = 2,
    budgets: Sequence[int] = DEFAULT_BUDGETS,
    fidelity_targets: Sequence[float] = (0.9, 0.95, 0.99),
    source: QuerySource = "uniform",
    X_public: pd.DataFrame | None = None,
    make_surrogate: Callable[[pd.DataFrame], Surrogate] | None = None,
    logistic: bool | None = None,
    linear: bool | None = None,
    true_model: Any = None,
    n_uniform: int = 1000,
    seed: int = 0,
) -> HardeningCostTable:
    """Measure what each output mode costs an extraction attacker, in queries.

    Each mode in ``modes`` wraps ``model`` in a :class:`~mlwarden.models.HardenedModel` and
    faces (a) equation solving (:func:`extract_logistic_pipeline`; Tramèr et al. §4.1) where
    the target is logistic-like and the output carries probabilities: full ones (exact with
    ``d + 1`` queries), rounded ones (least squares over more queries, which may not reach
    the target fidelity) and top-1 confidences for two classes (the other probability is its
    complement); it is reported not applicable for label-only outputs and for top-1 over more
    classes; (b) label-only line search (:func:`extract_linear_labels_pipeline`; Lowd & Meek
    2005, Tramèr et al. §6) against every output of a two-class linear target, within each
    budget, so the label row shows what hiding the probabilities really costs; and (c)
    distillation (:func:`extract_distillation`) on the same ``budgets``. Fidelity is the
    share of ``X_test`` rows on which the copy predicts the target's label.

    Parameters
    ----------
    model : ModelAdapter or fitted scikit-learn classifier
        The target. An estimator is wrapped in a :class:`~mlwarden.models.SklearnAdapter` and
        also judges fidelity (``true_model``). Every mode's attacks query it, so give it no
        budget or one large enough for all of them.
    X_reference : DataFrame
        Rows showing the input schema (categorical columns without missing values, as
        :func:`extract_logistic_pipeline` requires).
    X_test : DataFrame
        Held-out rows on which fidelity is measured.
    y_test : array, optional
        Their true labels, for the surrogates' accuracy.
    schema : TableSchema, optional
        Declared ranges and categories (uniform queries; which columns are categorical).
    categorical : sequence of str, optional
        The categorical columns (default: non-numeric in ``schema``, else by dtype).
    modes : sequence of OutputMode
        Output modes to measure; ``"probabilities"`` is the baseline of the cost ratios.
    decimals : int
        Rounding of the ``"rounded"`` and ``"top1"`` modes.
    budgets : sequence of int
        Query budgets of the distillation curve, of the least-squares runs and of the line
        search runs.
    fidelity_targets : sequence of float
        Fidelities to report the queries for.
    source, X_public, make_surrogate
        Distillation's query source and surrogate, as in :func:`extract_distillation`.
    logistic : bool, optional
        Whether the target is logistic-like (default: inspect the estimator behind the
        adapter; a black box that cannot be inspected counts as not logistic).
    linear : bool, optional
        Whether the target is linear for the line search (default: a ``coef_`` on the
        estimator behind the adapter).
    true_model : object with ``predict``, optional
        For evaluation only: judges fidelity without spending queries (default: the
        estimator if one was given, else the unhardened adapter, whose count then includes
        the evaluation queries).
    n_uniform : int
        Uniform rows for the attacks' secondary fidelity measure.
    seed : int
        Seed of every attack.

    Returns
    -------
    HardeningCostTable
    """
    targets = sorted({float(t) for t in fidelity_targets})
    if not targets or targets[0] <= 0.0 or targets[-1] > 1.0:
        raise ParameterError(f"fidelity_targets must lie in (0, 1], got {list(fidelity_targets)}")
    checked_budgets = _check_budgets(budgets)
    unknown = [m for m in modes if m not in ALL_MODES]
    if unknown:
        raise ParameterError(f"unknown output modes {unknown}; expected some of {list(ALL_MODES)}")
    if isinstance(model, ModelAdapter):
        base: ModelAdapter = model
    else:
        base = SklearnAdapter(model)
        true_model = model if true_model is None else true_model
    judge = true_model if true_model is not None else base
    is_logistic = _is_logistic_like(base) if logistic is None else logistic
    is_linear = _is_linear(base) if linear is None else linear
    columns = (
        list(categorical) if categorical is not None else _categorical_columns(X_reference, schema)
    )
    n_classes = len(np.asarray(base.classes_))

    setting = _Setting(
        X_reference, X_test, columns, checked_budgets, targets, judge, n_uniform, seed
    )
    rows: list[HardeningCostRow] = []
    for mode in dict.fromkeys(modes):
        hardened = HardenedModel(base, OutputHardening(mode=mode, decimals=decimals))
        # (a) equation solving and (b) label-only line search, where they apply
        attacks: list[tuple[HardeningAttack, str | None, Callable[..., _Run]]] = [
            ("equation_solving", _equations_excuse(is_logistic, mode, n_classes), _equations),
            ("line_search", _line_search_excuse(is_linear, n_classes), _line_search),
        ]
        for attack, reason, attack_run in attacks:
            if reason is not None:
                rows.append(_not_applicable(mode, attack, reason))
                continue
            start = time.perf_counter()
            curve = attack_run(hardened, setting)
            rows.append(_measured(mode, attack, curve, targets, start))
        # (c) distillation
        start = time.perf_counter()
        result = extract_distillation(
            hardened,
            X_reference,
            X_test=X_test,
            y_test=y_test,
            schema=schema,
            source=source,
            X_public=X_public,
            budgets=checked_budgets,
            make_surrogate=make_surrogate,
            n_uniform=n_uniform,
            true_model=judge,
            seed=seed,
        )
        dcurve = [(p.budget, p.fidelity_test) for p in result.curve if p.fidelity_test is not None]
        rows.append(
            _measured(
                mode, "distillation", (dcurve, result.queries, result.stop_reason), targets, start
            )
        )

    baseline = {row.attack: row for row in rows if row.mode == "probabilities"}
    for row in rows:
        reference = baseline.get(row.attack)
        for cost in row.costs:
            base_q = reference.queries_to(cost.target) if reference is not None else None
            if cost.queries is not None and base_q:
                cost.cost_ratio = cost.queries / base_q
    return HardeningCostTable(
        rows=rows,
        fidelity_targets=targets,
        budgets=checked_budgets,
        decimals=decimals,
        source=source,
    )
