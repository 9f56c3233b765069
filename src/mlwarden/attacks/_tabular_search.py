"""The search behind tabular evasion: a level-by-level beam search over one row's allowed changes.

Each level's candidate rows are built in one batch (:class:`Batcher`) that keeps the table's
columns and dtypes, so the model answers them in one ``predict_proba`` call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mlwarden.attacks._result import plain
from mlwarden.attacks._threat_model import EPS, ThreatModel, column_dtype, column_names
from mlwarden.errors import QueryBudgetExceeded

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

    from mlwarden.models import ModelAdapter


@dataclass(frozen=True)
class _Move:
    """Set controllable feature ``feature`` (position in the batcher's list) to ``value``."""

    feature: int
    value: Any
    cost: float


@dataclass
class Outcome:
    """What one row's search found: the cheapest flip (if any), its cost and queries."""

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
class RowSearch:
    """Level-by-level beam search for one row's cheapest flip (see :func:`tabular_evasion`)."""

    model: ModelAdapter
    batcher: Batcher
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

    def run(self) -> Outcome:
        self.moves = sorted(self.batcher.moves(self.row), key=lambda m: m.cost)
        out = Outcome(row=self.row, p_before=self.p0, p_after=self.p0, exact=True)
        if not self.moves:
            return out
        cheapest = self.moves[0].cost
        beam = [_State(key=(), cost=0.0)]
        depth = 0
        while beam and (self.max_changes is None or depth < self.max_changes):
            depth += 1
            bound = self.max_cost + EPS if out.cost is None else out.cost - EPS
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
            bound = self.max_cost + EPS if out.cost is None else out.cost - EPS
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

    def _record_flips(self, out: Outcome, states: list[_State], flips: npt.NDArray[Any]) -> None:
        for state, flipped in zip(states, flips.tolist(), strict=True):
            if not flipped:
                continue
            better = out.cost is None or state.cost < out.cost - EPS
            tie = out.cost is not None and abs(state.cost - out.cost) <= EPS
            if better or (tie and len(state.key) == len(out.moves) and state.p > out.p_after):
                out.cost = state.cost
                out.moves = tuple(self.moves[m] for m in state.key)
                out.p_after = state.p

    def _select(self, viable: list[_State], out: Outcome) -> list[_State]:
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


class Batcher:
    """Builds batches of changed copies of one row, keeping the table's columns and dtypes."""

    def __init__(self, X: pd.DataFrame | npt.NDArray[Any], threat: ThreatModel) -> None:
        import pandas as pd

        self.X = X
        self.frame = isinstance(X, pd.DataFrame)
        self.names = list(threat.features)
        self.constraints = [threat.features[n] for n in self.names]
        columns = column_names(X)
        self.positions = [columns.index(n) for n in self.names]
        self.allowed: list[list[Any]] = []
        for name, constraint in zip(self.names, self.constraints, strict=True):
            values = constraint.allowed()
            dtype = column_dtype(X, name)
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
