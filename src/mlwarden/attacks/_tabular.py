"""Constrained tabular evasion: the cheapest realistic change that flips a model's decision.

A threat model says which features the attacker controls, to which values, at what cost; the
attack searches, row by row, for the cheapest set of allowed changes that makes the model predict
the attacker's class, asking the model only for class probabilities (a *score-based* black-box
attack) and never more often than its query budget allows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlwarden._yaml_lines import parse_mapping, validation_error
from mlwarden.attacks._result import AttackResult, plain
from mlwarden.errors import ParameterError, QueryBudgetExceeded, SpecError

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

    from mlwarden.models import ModelAdapter

__all__ = [
    "FeatureConstraint",
    "TabularEvasionResult",
    "ThreatModel",
    "bundled_threat_model",
    "tabular_evasion",
]

Scalar: TypeAlias = bool | int | float | str
"""A feature value a threat model may name."""

_EPS = 1e-9
_DEFAULT_GRID = 10
_N_EXAMPLES = 5
_N_NAMED = 3  # columns named in an error message; the rest are counted


class FeatureConstraint(BaseModel):
    """What the attacker may do to one feature, and what each change costs.

    A feature is either *discrete* -- ``values`` lists the values it may be set to -- or
    *numeric* -- any value on the grid ``min, min + step, ...`` up to ``max`` (without ``step``,
    ten equal steps from ``min`` to ``max``). The original value always stays possible: leaving a
    feature alone costs nothing.

    Cost of one change: for a discrete feature, ``cost`` per change whatever the values (or, with
    ``value_costs``, the cost of setting the feature *to* that value: a self-signed certificate
    is cheaper than one from a trusted issuer). For a numeric feature, ``cost`` is per unit of
    change, ``cost * |new - old|``, so moving twice as far costs twice as much. Every cost is
    positive, which is what makes "cheapest" well defined and lets the search stop early.
    """

    model_config = ConfigDict(extra="forbid")

    values: list[Scalar] | None = Field(default=None, min_length=1)
    min: float | None = None
    max: float | None = None
    step: float | None = Field(default=None, gt=0)
    cost: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    value_costs: dict[Scalar, float] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> FeatureConstraint:
        ranged = self.min is not None or self.max is not None or self.step is not None
        if self.values is not None and ranged:
            raise ParameterError("give either `values` or `min`/`max`(/`step`), not both")
        if self.values is None and (self.min is None or self.max is None):
            raise ParameterError("give either `values` (allowed values) or both `min` and `max`")
        if self.min is not None and self.max is not None:
            if not (math.isfinite(self.min) and math.isfinite(self.max)):
                raise ParameterError("`min` and `max` must be finite numbers")
            if self.min > self.max:
                raise ParameterError(f"`min` ({self.min}) is greater than `max` ({self.max})")
        if self.values is not None and len(set(self.values)) != len(self.values):
            raise ParameterError(f"`values` lists a value twice: {self.values}")
        if self.value_costs is not None:
            if self.values is None:
                raise ParameterError("`value_costs` only applies to a feature with `values`")
            unknown = [v for v in self.value_costs if v not in self.values]
            if unknown:
                raise ParameterError(f"`value_costs` names values not in `values`: {unknown}")
            bad = {v: c for v, c in self.value_costs.items() if not (c > 0 and math.isfinite(c))}
            if bad:
                raise ParameterError(f"`value_costs` must be positive finite numbers, got {bad}")
        return self

    @property
    def numeric(self) -> bool:
        """Whether the feature is a numeric range (cost per unit) rather than a value list."""
        return self.values is None

    def allowed(self) -> list[Scalar]:
        """The values the feature may be set to (for a range: its grid, ``min`` to ``max``)."""
        if self.values is not None:
            return list(self.values)
        assert self.min is not None and self.max is not None
        lo, hi = self.min, self.max
        if hi == lo:
            return [lo]
        step = self.step if self.step is not None else (hi - lo) / _DEFAULT_GRID
        n = math.floor((hi - lo) / step + _EPS)
        return [round(lo + k * step, 12) for k in range(n + 1)]

    def change_cost(self, old: Any, new: Any) -> float:
        """Cost of changing the feature from ``old`` to ``new`` (see the class docstring)."""
        if self.values is None:
            return self.cost * abs(float(new) - float(old))
        if self.value_costs is not None and new in self.value_costs:
            return float(self.value_costs[new])
        return self.cost


class ThreatModel(BaseModel):
    """Who attacks, which features they control and at what cost, and how many they may change.

    Features not listed in ``features`` are *not* controllable: the attack never changes them.
    ``target`` is the class the attacker wants the model to predict; ``max_changes`` caps how
    many features one evasion may change (None: only the cost budget limits it).
    """

    model_config = ConfigDict(extra="forbid")

    target: Scalar
    description: str = ""
    features: dict[str, FeatureConstraint] = Field(min_length=1)
    max_changes: int | None = Field(default=None, ge=1)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ThreatModel:
        """Read a threat model file; a problem raises ``SpecError`` naming field and line.

        A threat model is a spec a person writes, like a pipeline spec, so its problems are
        ``SpecError`` (exit code 2), in the same ``file:line: field: got ...; expected ...``
        form; ``DataError`` is kept for tables that cannot be used.
        """
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError as exc:
            raise SpecError(f"threat model file {path} does not exist") from exc
        return cls.from_yaml_text(text, source=str(path))

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "<threat model>") -> ThreatModel:
        """Validate threat-model YAML text; see :meth:`from_yaml`."""
        raw, lines = parse_mapping(text, source, "with target, features, max_changes")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise validation_error(exc, lines, source, skip=_is_union_tag) from None

    def check_columns(self, X: pd.DataFrame | npt.NDArray[Any]) -> None:
        """Refuse a table the threat model does not fit: unknown features or impossible values.

        Raises ``SpecError`` (the threat model is what needs editing) in one line: how many of
        its features the table lacks and how many table columns it leaves out (a few named,
        with the closest column name for a likely typo), and the command that writes a threat
        model for the table's own columns. A numeric array's columns are named ``"0"``, ``"1"``...
        """
        columns = _column_names(X)
        unknown = [name for name in self.features if name not in columns]
        if unknown:
            raise SpecError(_foreign_columns_message(unknown, self.features, columns))
        for name, constraint in self.features.items():
            _check_values(name, constraint, _column_dtype(X, name))


def bundled_threat_model(name: str) -> ThreatModel:
    """A threat model shipped with mlwarden, e.g. ``bundled_threat_model("phishing")``."""
    resource = resources.files("mlwarden").joinpath("_specs", f"{name}_threat_model.yaml")
    if not resource.is_file():
        raise SpecError(f"no bundled threat model named {name!r}")
    return ThreatModel.from_yaml_text(resource.read_text(), source=f"{name}_threat_model.yaml")


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
    batcher = _Batcher(X, threat)
    proba0 = np.asarray(model.predict_proba(X), dtype=float) if n_rows else np.empty((0, 0))
    attacked = [i for i in range(n_rows) if int(np.argmax(proba0[i])) != t_idx] if n_rows else []
    remaining = None if limit is None else limit - n_rows
    outcomes: list[_Outcome] = []
    stopped = False
    for done, i in enumerate(attacked):
        p0 = float(proba0[i, t_idx])
        if stopped:
            outcomes.append(_Outcome(row=i, p_before=p0, p_after=p0, exact=False))
            continue
        share = None if remaining is None else remaining // (len(attacked) - done)
        search = _RowSearch(
            model=model,
            batcher=batcher,
            row=i,
            t_idx=t_idx,
            p0=p0,
            max_cost=max_cost,
            max_changes=threat.max_changes,
            beam_width=beam_width,
            limit=share,
            rng=np.random.default_rng([seed, i]),  # a row's search ignores the other rows
        )
        outcome = search.run()
        outcomes.append(outcome)
        if remaining is not None:
            remaining -= outcome.queries
        stopped = search.refused
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


# ----------------------------------------------------------------------------------------------
# Search


@dataclass(frozen=True)
class _Move:
    """Set controllable feature ``feature`` (position in the batcher's list) to ``value``."""

    feature: int
    value: Any
    cost: float


@dataclass
class _Outcome:
    row: int
    p_before: float
    p_after: float
    exact: bool
    cost: float | None = None
    moves: tuple[_Move, ...] = ()
    queries: int = 0
    cut_by_budget: bool = False


@dataclass
class _State:
    key: tuple[int, ...]
    cost: float
    rank: int = 0
    p: float = 0.0


@dataclass
class _RowSearch:
    """Level-by-level beam search for one row's cheapest flip (see :func:`tabular_evasion`)."""

    model: ModelAdapter
    batcher: _Batcher
    row: int
    t_idx: int
    p0: float
    max_cost: float
    max_changes: int | None
    beam_width: int | None
    limit: int | None
    rng: np.random.Generator
    refused: bool = False
    moves: list[_Move] = field(default_factory=list)

    def run(self) -> _Outcome:
        self.moves = sorted(self.batcher.moves(self.row), key=lambda m: m.cost)
        out = _Outcome(row=self.row, p_before=self.p0, p_after=self.p0, exact=True)
        if not self.moves:
            return out
        cheapest = self.moves[0].cost
        beam = [_State(key=(), cost=0.0)]
        depth = 0
        while beam and (self.max_changes is None or depth < self.max_changes):
            depth += 1
            bound = self.max_cost + _EPS if out.cost is None else out.cost - _EPS
            children = self._expand(beam, bound)
            if not children:
                break
            allowed = children
            if self.limit is not None and len(children) > self.limit - out.queries:
                allowed = children[: max(self.limit - out.queries, 0)]
                out.exact = False
                out.cut_by_budget = True
            if not allowed:
                break
            try:
                proba = np.asarray(
                    self.model.predict_proba(self.batcher.batch(self.row, allowed, self.moves)),
                    dtype=float,
                )
            except QueryBudgetExceeded:
                self.refused = True
                out.exact = False
                out.cut_by_budget = True
                break
            out.queries += len(allowed)
            flips = np.argmax(proba, axis=1) == self.t_idx
            for state, p in zip(allowed, proba[:, self.t_idx].tolist(), strict=True):
                state.p = float(p)
            self._record_flips(out, allowed, flips)
            if out.cut_by_budget:
                break
            bound = self.max_cost + _EPS if out.cost is None else out.cost - _EPS
            viable = [
                s
                for s, flipped in zip(allowed, flips.tolist(), strict=True)
                if not flipped and s.cost + cheapest < bound
            ]
            if self.max_changes is not None and depth >= self.max_changes:
                break
            beam = self._select(viable, out)
        return out

    def _expand(self, beam: list[_State], bound: float) -> list[_State]:
        """Every child of the beam cheaper than ``bound``, once each, cheapest first."""
        children: dict[tuple[int, ...], _State] = {}
        for rank, state in enumerate(beam):
            used = {self.moves[m].feature for m in state.key}
            for m, move in enumerate(self.moves):
                cost = state.cost + move.cost
                if cost >= bound:
                    break  # moves are sorted by cost
                if move.feature in used:
                    continue
                key = tuple(sorted((*state.key, m)))
                if key not in children:
                    children[key] = _State(key=key, cost=cost, rank=rank)
        return sorted(children.values(), key=lambda s: (s.cost, s.rank, s.key))

    def _record_flips(self, out: _Outcome, states: list[_State], flips: npt.NDArray[Any]) -> None:
        for state, flipped in zip(states, flips.tolist(), strict=True):
            if not flipped:
                continue
            better = out.cost is None or state.cost < out.cost - _EPS
            tie = out.cost is not None and abs(state.cost - out.cost) <= _EPS
            if better or (tie and len(state.key) == len(out.moves) and state.p > out.p_after):
                out.cost = state.cost
                out.moves = tuple(self.moves[m] for m in state.key)
                out.p_after = state.p

    def _select(self, viable: list[_State], out: _Outcome) -> list[_State]:
        """The beam for the next level: the most probability gained per unit of cost."""
        if self.beam_width is None or len(viable) <= self.beam_width:
            return viable
        out.exact = False
        gain = np.array([(s.p - self.p0) / s.cost for s in viable])
        cost = np.array([s.cost for s in viable])
        jitter = self.rng.random(len(viable))
        order = np.lexsort((jitter, cost, -gain))
        return [viable[k] for k in order[: self.beam_width]]


# ----------------------------------------------------------------------------------------------
# Building candidate rows


class _Batcher:
    """Builds batches of changed copies of one row, keeping the table's columns and dtypes."""

    def __init__(self, X: pd.DataFrame | npt.NDArray[Any], threat: ThreatModel) -> None:
        import pandas as pd

        self.X = X
        self.frame = isinstance(X, pd.DataFrame)
        self.names = list(threat.features)
        self.constraints = [threat.features[n] for n in self.names]
        columns = _column_names(X)
        self.positions = [columns.index(n) for n in self.names]
        self.allowed: list[list[Any]] = []
        for name, constraint in zip(self.names, self.constraints, strict=True):
            values = constraint.allowed()
            dtype = _column_dtype(X, name)
            if constraint.numeric and isinstance(dtype, np.dtype) and dtype.kind in "iu":
                values = [int(v) for v in values]  # check_columns made sure they are whole
            self.allowed.append(values)
        if self.frame:
            assert isinstance(X, pd.DataFrame)
            self.columns: list[Any] = [X[c].to_numpy() for c in X.columns]
            self.dtypes: list[Any] = []
            for c in X.columns:
                dtype = X[c].dtype
                if c in threat.features and isinstance(dtype, np.dtype) and dtype.kind != "O":
                    dtype = _promote(dtype, self.allowed[self.names.index(c)])
                self.dtypes.append(dtype)
        else:
            array = np.asarray(X)
            dtype = array.dtype
            for vals in self.allowed:
                dtype = _promote(dtype, vals)
            self.array = array.astype(dtype, copy=False)

    def original(self, row: int, feature: int) -> Any:
        """Row ``row``'s original value of controllable feature ``feature``, as Python."""
        if self.frame:
            value = self.columns[self.positions[feature]][row]
        else:
            value = self.array[row, self.positions[feature]]
        return plain(value)

    def moves(self, row: int) -> list[_Move]:
        """Every single change the threat model allows on this row."""
        out = []
        for k, (constraint, values) in enumerate(zip(self.constraints, self.allowed, strict=True)):
            old = self.original(row, k)
            for value in values:
                if _same(value, old):
                    continue
                out.append(_Move(feature=k, value=value, cost=constraint.change_cost(old, value)))
        return out

    def batch(self, row: int, states: Sequence[_State], moves: list[_Move]) -> Any:
        """The row with each state's changes applied, one output row per state."""
        import pandas as pd

        n = len(states)
        edits: dict[int, tuple[list[int], list[Any]]] = {}
        for r, state in enumerate(states):
            for m in state.key:
                move = moves[m]
                idx, vals = edits.setdefault(self.positions[move.feature], ([], []))
                idx.append(r)
                vals.append(move.value)
        if not self.frame:
            out = np.repeat(self.array[row : row + 1], n, axis=0)
            for col, (idx, vals) in edits.items():
                out[idx, col] = vals
            return out
        assert isinstance(self.X, pd.DataFrame)
        data: dict[Any, Any] = {}
        for k, name in enumerate(self.X.columns):
            source = self.columns[k]
            dtype = self.dtypes[k]
            if k not in edits:
                data[name] = pd.Series(np.repeat(source[row : row + 1], n), dtype=dtype)
                continue
            idx, vals = edits[k]
            if isinstance(dtype, np.dtype):
                column = np.repeat(source[row : row + 1], n).astype(dtype)
            else:  # categorical or another pandas dtype: edit as objects, then convert
                column = np.repeat(np.asarray(source[row : row + 1], dtype=object), n)
            column[idx] = vals
            data[name] = pd.Series(column, dtype=dtype)
        return pd.DataFrame(data, columns=self.X.columns)


# ----------------------------------------------------------------------------------------------
# Helpers


def _summarise(
    *,
    model: ModelAdapter,
    X: pd.DataFrame | npt.NDArray[Any],
    threat: ThreatModel,
    batcher: _Batcher,
    outcomes: list[_Outcome],
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
        (lvl, (sum(1 for c in found if c <= lvl + _EPS) / n_attacked) if n_attacked else 0.0)
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


def _query_limit(model: ModelAdapter, budget: int | None) -> int | None:
    """The fewest queries left under the attack's budget and the adapter's own, if it has one."""
    limits = [] if budget is None else [budget]
    own = getattr(model, "budget", None)
    if isinstance(own, int) and not isinstance(own, bool):
        limits.append(max(own - model.queries, 0))
    return min(limits) if limits else None


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _promote(dtype: Any, values: list[Any]) -> Any:
    """The dtype that holds a column's values and the threat model's values for it."""
    if np.issubdtype(dtype, np.number) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        return np.result_type(dtype, np.asarray(values).dtype)
    if np.issubdtype(dtype, np.bool_) and all(isinstance(v, bool) for v in values):
        return dtype
    return np.dtype(object)


def _foreign_columns_message(
    unknown: list[str], features: dict[str, FeatureConstraint], columns: list[str]
) -> str:
    """One line: the features the table lacks, the columns left out, and how to make a fit."""
    import difflib

    hints = []
    for name in unknown[:_N_NAMED]:
        close = difflib.get_close_matches(name, columns, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    message = (
        f"features: the table has no column for {len(unknown)} of the threat model's "
        f"{len(features)} features ({_named(hints, len(unknown))})"
    )
    extra = [c for c in columns if c not in features]
    if extra:
        named = [repr(c) for c in extra[:_N_NAMED]]
        message += (
            f" and {len(extra)} of its {len(columns)} columns are not in it "
            f"({_named(named, len(extra))})"
        )
    return (
        f"{message}; evasion needs a threat model for these columns: write a starter one with "
        f"`mlwarden threat-model init DATA --label LABEL --out threat.yaml`, set its costs, and "
        f"give that file as threat_model"
    )


def _named(names: list[str], total: int) -> str:
    more = total - len(names)
    return ", ".join(names) + (f" and {more} more" if more else "")


def _column_names(X: Any) -> list[str]:
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        return [str(c) for c in X.columns]
    array = np.asarray(X)
    if array.ndim != 2:
        raise ParameterError(f"X must be a table (2-D), got shape {array.shape}")
    return [str(j) for j in range(array.shape[1])]


def _column_dtype(X: Any, name: str) -> Any:
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        return X[name].dtype
    return np.asarray(X).dtype


def _row_labels(X: Any) -> list[Any]:
    import pandas as pd

    if not isinstance(X, pd.DataFrame):
        return list(range(len(X)))
    return [plain(v) for v in X.index.tolist()]


def _check_values(name: str, constraint: FeatureConstraint, dtype: Any) -> None:
    """Refuse values a column cannot hold: text in a numeric column, fractions in an integer."""
    import pandas as pd

    values = constraint.allowed()
    where = f"features.{name}"
    if isinstance(dtype, pd.CategoricalDtype):
        missing = [v for v in values if v not in set(dtype.categories.tolist())]
        if missing:
            raise SpecError(f"{where}: values {missing} are not categories of the column")
        return
    if not isinstance(dtype, np.dtype) or dtype.kind == "O":
        return
    if np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.bool_):
        bad = [v for v in values if isinstance(v, bool | str)]
        if bad:
            raise SpecError(f"{where}: got {bad}; expected numbers (the column is {dtype})")
        if np.issubdtype(dtype, np.integer):
            fractions = [v for v in values if float(v) != math.floor(float(v))]
            if fractions:
                raise SpecError(
                    f"{where}: got {fractions[:5]}; expected whole numbers (the column is "
                    f"{dtype}); give an integer `step` or whole `values`"
                )


def _is_union_tag(part: Any) -> bool:
    text = str(part)
    return text in {"bool", "int", "float", "str"} or text.startswith("function-")
