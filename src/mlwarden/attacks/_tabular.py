"""Constrained tabular evasion: the cheapest realistic change that flips a model's decision.

A threat model says which features the attacker controls, to which values, at what cost; the
attack searches, row by row, for the cheapest set of allowed changes that makes the model predict
the attacker's class, asking the model only for class probabilities (a *score-based* black-box
attack) and never more often than its query budget allows.
"""

from __future__ import annotations

import math
import pickle
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlwarden._tasks import current_runner, task_map
from mlwarden.attacks._result import AttackResult, plain
from mlwarden.attacks._tabular_search import Batcher, Outcome, RowSearch
from mlwarden.attacks._threat_model import EPS, Scalar, ThreatModel
from mlwarden.errors import ParameterError, SpecError

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

    from mlwarden.models import ModelAdapter

__all__ = ["TabularEvasionResult", "tabular_evasion"]

_N_EXAMPLES = 5
#: Row chunks per worker when the rows are searched in parallel (to even out the workers).
_CHUNKS_PER_WORKER = 2
#: Fewer attacked rows than this per chunk are searched here: copying the model to a worker
#: costs more than their search (measured on Phishing: ~3 ms a row, ~0.3 s a copy).
_MIN_ROWS_PER_CHUNK = 100


class TabularEvasionResult(AttackResult):
    """What :func:`tabular_evasion` found: per-row cheapest flips and the success-cost curve.

    ``n_points`` counts the *attacked* rows: those the model did not already classify as
    ``target`` (they are counted in ``already_target`` and left out, since there is nothing to
    evade). ``rows`` gives each attacked row's position in the input; ``cost``, ``changes``,
    ``p_target`` (the target probability after the flip, or before, where none was found),
    ``exact`` and ``row_queries`` (the row's search, not counting the first pass) are aligned
    with it. ``cost`` is the cheapest
    flip found (None: none within ``max_cost``); ``exact`` is True where the search was not cut
    by the beam or the budget, so the cost is the proven minimum (or no flip exists within
    ``max_cost``). ``success_curve`` holds ``(c, share of attacked rows flipped at cost <= c)``
    at 0, at every cost a flip was found at, and at ``max_cost``: the curve is a step function
    that only moves at those costs. ``queries_per_success`` is every query the attack spent
    (including the first pass that classifies the rows) divided by the rows flipped.
    ``budget_exhausted`` is True when the query budget cut at least one row's search short.
    """

    target: Scalar
    max_cost: float
    max_changes: int | None
    already_target: int
    rows: list[int]
    cost: list[float | None]
    changes: list[list[dict[str, Any]]]
    p_target: list[float]
    exact: list[bool]
    row_queries: list[int]
    success_curve: list[tuple[float, float]]
    queries_per_success: float | None
    budget_exhausted: bool


def tabular_evasion(
    model: ModelAdapter,
    X: pd.DataFrame | npt.NDArray[Any],
    threat: ThreatModel,
    *,
    max_cost: float,
    budget: int | None = None,
    beam_width: int | None = 8,
    seed: int = 0,
) -> TabularEvasionResult:
    """Find, per row, the cheapest allowed change that makes ``model`` predict ``threat.target``.

    A score-based black-box attack: the model is only asked for ``predict_proba`` (the decision
    is its argmax, as :meth:`SklearnAdapter.predict`). Each row not already classified as the
    target is searched level by level -- level k holds states that change k features -- with
    all children of a level evaluated in one ``predict_proba`` call. A child costing as much as
    the cheapest flip found so far, or more than ``max_cost``, is never queried; a flip is never
    extended (every cost is positive). Between levels the ``beam_width`` most promising non-flip
    states survive, ranked by target-probability gain per unit of cost (ties broken at random
    with ``seed``). With ``beam_width=None`` the search is exhaustive up to the cost bound, and
    so exactly the minimal-cost evasion, as in the graph search of Kulynych et al., "Evading
    classifiers in discrete domains with provable optimality guarantees" (2018); the
    per-feature costs and the restriction to realistic values follow Ballet et al.,
    "Imperceptible adversarial attacks on tabular data" (2019).

    Without a query limit the rows are independent and, when there are enough of them, are
    searched in parallel on the current task runner (:func:`mlwarden._tasks.task_map`), with
    the same results; with one, row after row, since each row's share of the budget depends
    on what the rows before spent.

    Parameters
    ----------
    model
        The model under attack, counting queries (each row sent is one query).
    X
        Rows to attack: a DataFrame with the model's column names, or a numeric array whose
        columns the threat model names ``"0"``, ``"1"``, ...
    threat
        Controllable features, allowed values, costs and the target class.
    max_cost
        The most one row's changes may cost in total.
    budget
        The most queries the attack may spend, the first pass that classifies the rows
        included (None: no limit of its own). When ``model`` has a ``budget`` attribute (as
        :class:`SklearnAdapter`), the attack also keeps within what it has left. After the
        first pass, each row gets an equal share of what is left, shares unspent by earlier rows
        passing to later ones; a refused query (``QueryBudgetExceeded``) ends the attack
        gracefully, with what was found so far.
    beam_width
        Non-flip states kept between levels; None keeps all (exhaustive, exact).
    seed
        Seeds the random tie-breaking between equally promising states (per row, so a row's
        result does not depend on which other rows are attacked).

    Returns
    -------
    TabularEvasionResult

    Raises
    ------
    SpecError
        The threat model does not fit ``X`` or its target is not one of the model's classes.
    ValueError
        A bad argument, or a ``budget`` too small to classify the rows once.
    QueryBudgetExceeded
        Only when the model refuses the first pass that classifies the rows (there is nothing
        to report yet); later refusals end the attack gracefully.
    """
    start = time.perf_counter()
    if not (max_cost >= 0 and math.isfinite(max_cost)):
        raise ParameterError(f"max_cost must be a non-negative finite number, got {max_cost}")
    if beam_width is not None and beam_width < 1:
        raise ParameterError(f"beam_width must be at least 1 (or None), got {beam_width}")
    if budget is not None and budget < 0:
        raise ParameterError(f"budget must be a non-negative number of queries, got {budget}")
    threat.check_columns(X)
    classes = np.asarray(model.classes_)
    hits = [k for k, c in enumerate(classes.tolist()) if c == threat.target]
    if not hits:
        raise SpecError(
            f"target: got {threat.target!r}; expected one of the model's classes {classes.tolist()}"
        )
    t_idx = hits[0]
    n_rows = len(X)
    limit = _query_limit(model, budget)
    if limit is not None and limit < n_rows:
        raise ParameterError(
            f"a budget of {limit} queries cannot even classify the {n_rows} rows once"
        )
    queries_before = model.queries
    batcher = Batcher(X, threat)
    proba0 = np.asarray(model.predict_proba(X), dtype=float) if n_rows else np.empty((0, 0))
    attacked = [i for i in range(n_rows) if int(np.argmax(proba0[i])) != t_idx] if n_rows else []
    searches = _Searches(
        model=model, batcher=batcher, t_idx=t_idx, max_cost=max_cost,
        max_changes=threat.max_changes, beam_width=beam_width, seed=seed,
    )  # fmt: skip
    rows = [(i, float(proba0[i, t_idx])) for i in attacked]
    workers = current_runner().workers
    n_chunks = min(len(rows) // _MIN_ROWS_PER_CHUNK, workers * _CHUNKS_PER_WORKER)
    if limit is None and workers > 1 and n_chunks > 1 and _travels(model):
        outcomes, stopped = searches.in_parallel(rows, n_chunks, queries_before + n_rows), False
    else:
        outcomes, stopped = searches.in_turn(rows, None if limit is None else limit - n_rows)
    return _summarise(
        model=model,
        X=X,
        threat=threat,
        batcher=batcher,
        outcomes=outcomes,
        n_rows=n_rows,
        max_cost=max_cost,
        budget=budget,
        beam_width=beam_width,
        seed=seed,
        queries=model.queries - queries_before,
        stopped=stopped or any(o.cut_by_budget for o in outcomes),
        wall=time.perf_counter() - start,
    )


@dataclass(frozen=True)
class _Searches:
    """One row's search at a time, or every row at once through the task runner."""

    model: ModelAdapter
    batcher: Batcher
    t_idx: int
    max_cost: float
    max_changes: int | None
    beam_width: int | None
    seed: int

    def search(self, row: int, p0: float, limit: int | None) -> RowSearch:
        """Row ``row``'s search, seeded by the row alone (not by which other rows run)."""
        return RowSearch(
            model=self.model, batcher=self.batcher, row=row, t_idx=self.t_idx, p0=p0,
            max_cost=self.max_cost, max_changes=self.max_changes, beam_width=self.beam_width,
            limit=limit, rng=np.random.default_rng([self.seed, row]),
        )  # fmt: skip

    def in_turn(
        self, rows: list[tuple[int, float]], remaining: int | None
    ) -> tuple[list[Outcome], bool]:
        """Row after row, each with an equal share of the queries left (unspent shares pass
        on): a budget makes each row depend on what the rows before it spent."""
        outcomes: list[Outcome] = []
        stopped = False
        for done, (i, p0) in enumerate(rows):
            if stopped:
                outcomes.append(Outcome(row=i, p_before=p0, p_after=p0, exact=False))
                continue
            share = None if remaining is None else remaining // (len(rows) - done)
            search = self.search(i, p0, share)
            outcome = search.run()
            outcomes.append(outcome)
            if remaining is not None:
                remaining -= outcome.queries
            stopped = search.refused
        return outcomes, stopped

    def in_parallel(
        self, rows: list[tuple[int, float]], n_chunks: int, counted: int
    ) -> list[Outcome]:
        """The rows in ``n_chunks`` interleaved chunks on the task runner (no budget: the rows
        are independent).

        Rows searched in other processes query copies of the model; their queries are then
        counted on ``self.model``, whose count must reach ``counted`` plus every row's queries.
        """
        chunks = [rows[start::n_chunks] for start in range(n_chunks)]

        def run_chunk(chunk: list[tuple[int, float]]) -> list[Outcome]:
            return [self.search(i, p0, None).run() for i, p0 in chunk]

        outcomes: list[Outcome] = [None] * len(rows)  # type: ignore[list-item]
        for start, part in enumerate(task_map(run_chunk, chunks)):
            outcomes[start::n_chunks] = part
        uncounted = counted + sum(o.queries for o in outcomes) - self.model.queries
        if uncounted > 0:
            self.model._spend(uncounted)  # type: ignore[attr-defined]
        return outcomes


def _summarise(
    *,
    model: ModelAdapter,
    X: pd.DataFrame | npt.NDArray[Any],
    threat: ThreatModel,
    batcher: Batcher,
    outcomes: list[Outcome],
    n_rows: int,
    max_cost: float,
    budget: int | None,
    beam_width: int | None,
    seed: int,
    queries: int,
    stopped: bool,
    wall: float,
) -> TabularEvasionResult:
    n_attacked = len(outcomes)
    costs = [o.cost for o in outcomes]
    found = sorted(c for c in costs if c is not None)
    n_success = len(found)
    levels = sorted({0.0, *(round(c, 9) for c in found), round(max_cost, 9)})
    curve = [
        (lvl, (sum(1 for c in found if c <= lvl + EPS) / n_attacked) if n_attacked else 0.0)
        for lvl in levels
    ]
    changes = [
        [
            {
                "feature": batcher.names[m.feature],
                "from": batcher.original(o.row, m.feature),
                "to": m.value,
            }
            for m in sorted(o.moves, key=lambda m: m.feature)
        ]
        for o in outcomes
    ]
    labels = _row_labels(X)
    successes = sorted(
        (k for k, o in enumerate(outcomes) if o.cost is not None),
        key=lambda k: (outcomes[k].cost, outcomes[k].row),
    )
    examples = [
        {
            "row": outcomes[k].row,
            "index": labels[outcomes[k].row],
            "cost": outcomes[k].cost,
            "p_target_before": round(outcomes[k].p_before, 6),
            "p_target_after": round(outcomes[k].p_after, 6),
            "changes": changes[k],
            "queries": outcomes[k].queries,
        }
        for k in successes[:_N_EXAMPLES]
    ]
    return TabularEvasionResult(
        attack="tabular_evasion",
        n_points=n_attacked,
        success_rate=n_success / n_attacked if n_attacked else 0.0,
        queries=queries,
        budget=budget,
        wall_time_s=wall,
        params={
            "max_cost": max_cost,
            "beam_width": beam_width,
            "seed": seed,
            "max_changes": threat.max_changes,
            "controllable": list(threat.features),
            "n_rows": n_rows,
            "access": "score-based black box (predict_proba)",
        },
        examples=examples,
        target=threat.target,
        max_cost=max_cost,
        max_changes=threat.max_changes,
        already_target=n_rows - n_attacked,
        rows=[o.row for o in outcomes],
        cost=costs,
        changes=changes,
        p_target=[o.p_after for o in outcomes],
        exact=[o.exact for o in outcomes],
        row_queries=[o.queries for o in outcomes],
        success_curve=curve,
        queries_per_success=queries / n_success if n_success else None,
        budget_exhausted=stopped,
    )


def _travels(model: ModelAdapter) -> bool:
    """Whether rows can be searched elsewhere: ``model`` can be copied to the runner's workers
    (an ONNX session cannot), and then charged for the queries its copies answered."""
    if not callable(getattr(model, "_spend", None)):
        return False
    try:
        pickle.dumps(model)
    except (TypeError, AttributeError, pickle.PicklingError):
        return False
    return True


def _query_limit(model: ModelAdapter, budget: int | None) -> int | None:
    """The fewest queries left under the attack's budget and the adapter's own, if it has one."""
    limits = [] if budget is None else [budget]
    own = getattr(model, "budget", None)
    if isinstance(own, int) and not isinstance(own, bool):
        limits.append(max(own - model.queries, 0))
    return min(limits) if limits else None


def _row_labels(X: Any) -> list[Any]:
    import pandas as pd

    if not isinstance(X, pd.DataFrame):
        return list(range(len(X)))
    return [plain(v) for v in X.index.tolist()]
