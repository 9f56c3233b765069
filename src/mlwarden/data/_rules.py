"""Cross-column rules as small expressions (``hours_per_week <= 24 * 7``), evaluated safely.

An expression is parsed with :mod:`ast` and only arithmetic, comparisons, ``and``/``or``/``not``,
column names, numbers, strings and a few functions (``abs``, ``len``, ``isnull``, ``notnull``)
are accepted; it is then evaluated column-at-a-time on NumPy arrays. Nothing is passed to
``eval``, so a schema file cannot run code.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, field_validator

from mlwarden.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_FUNCTIONS = ("abs", "len", "isnull", "notnull")


class Rule(BaseModel):
    """A named condition every row must satisfy; rows where an operand is missing are skipped."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    expr: str

    @field_validator("expr")
    @classmethod
    def _parses(cls, expr: str) -> str:
        parse_rule(expr)
        return expr

    def columns(self) -> set[str]:
        """The column names the expression reads."""
        return {n.id for n in ast.walk(parse_rule(self.expr)) if isinstance(n, ast.Name)} - set(
            _FUNCTIONS
        )


def parse_rule(expr: str) -> ast.expr:
    """Parse and vet a rule expression; raise ``DataError`` naming anything not allowed."""
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError as exc:
        raise DataError(f"rule {expr!r} is not a valid expression: {exc.msg}") from None
    for node in ast.walk(tree):
        allowed = (
            ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Name, ast.Constant,
            ast.Load, ast.And, ast.Or, ast.Not, ast.USub, ast.UAdd, ast.Call,
            *_BINARY, *_COMPARE,
        )  # fmt: skip
        if not isinstance(node, allowed):
            raise DataError(
                f"rule {expr!r} uses {type(node).__name__}, which rules do not allow; use "
                "columns, numbers, strings, arithmetic, comparisons, and/or/not, "
                f"and the functions {', '.join(_FUNCTIONS)}"
            )
        if isinstance(node, ast.Call) and not (
            isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS and not node.keywords
        ):
            raise DataError(f"rule {expr!r} calls a function rules do not offer: {_FUNCTIONS}")
    return tree


def _evaluate(node: ast.expr, frame: pd.DataFrame) -> Any:
    import numpy as np
    import pandas as pd

    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in frame.columns:
            raise DataError(f"rule names column {node.id!r}, which the table does not have")
        return frame[node.id].to_numpy()
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, frame), _evaluate(node.right, frame))
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, frame)
        if isinstance(node.op, ast.Not):
            return ~np.asarray(operand, dtype=bool)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BoolOp):
        values = [np.asarray(_evaluate(v, frame), dtype=bool) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        result = values[0]
        for value in values[1:]:
            result = combine(result, value)
        return result
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, frame)
        result = np.ones(len(frame), dtype=bool)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(right_node, frame)
            result &= np.asarray(_COMPARE[type(op)](left, right), dtype=bool)
            left = right
        return result
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        args = [_evaluate(a, frame) for a in node.args]
        if len(args) != 1:
            raise DataError(f"{node.func.id}() takes one argument in a rule")
        if node.func.id == "abs":
            return np.abs(args[0])
        if node.func.id == "len":
            return pd.Series(args[0]).str.len().to_numpy()
        missing = pd.isna(args[0])
        return missing if node.func.id == "isnull" else ~missing
    raise DataError(f"cannot evaluate {ast.dump(node)}")  # parse_rule refuses everything else


def rule_violations(rule: Rule, frame: pd.DataFrame) -> Any:
    """Boolean mask of rows that break ``rule`` (rows with a missing operand are not judged)."""
    import numpy as np

    tree = parse_rule(rule.expr)
    calls_null_test = any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id.endswith("null")
        for n in ast.walk(tree)
    )
    with np.errstate(all="ignore"):
        try:
            holds = np.asarray(_evaluate(tree, frame), dtype=bool)
        except TypeError as exc:
            raise DataError(f"rule {rule.name!r} ({rule.expr}) cannot be evaluated: {exc}") from exc
    if holds.shape != (len(frame),):
        holds = np.broadcast_to(holds, (len(frame),))
    broken = ~holds
    if not calls_null_test:
        operands = [c for c in rule.columns() if c in frame.columns]
        if operands:
            broken &= ~frame[operands].isna().any(axis=1).to_numpy()
    return broken
