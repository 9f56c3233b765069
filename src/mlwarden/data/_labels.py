"""The classes of a label column, and the stray label values whose rows are quarantined.

A label value is compared by its text (``1``, ``1.0`` and ``'1'`` are the same class), so a
spec's ``positive: 1`` or ``positive: '1'`` matches a label column read as numbers or as text.
Which values are classes, in order of precedence:

1. the spec's ``data.classes`` list, when given;
2. the categories the schema declares for the label column, when it declares any;
3. otherwise every value that is the ``positive`` class or holds at least ``MIN_CLASS_SHARE``
   of the labelled rows and at least ``MIN_CLASS_ROWS`` rows.

Every other value (a typo such as ``phishng``) and every missing label is a stray: its rows are
quarantined by validation with a reason naming the value and the expected classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from mlwarden.data._schema import Scalar, TableSchema
from mlwarden.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: Below this share of the labelled rows a value is a stray, not a class (rule 3).
MIN_CLASS_SHARE = 0.01
#: Below this many rows a value is a stray, not a class (rule 3): a class needs rows to learn
#: from and to appear on both sides of a stratified split.
MIN_CLASS_ROWS = 2
_SHOWN = 10


def label_key(value: object) -> str:
    """The text a label value is compared by: ``1``, ``1.0``, ``'1'`` and ``'1.0'`` give ``'1'``."""
    item = getattr(value, "item", None)
    plain = item() if callable(item) and not isinstance(value, str) else value
    if isinstance(plain, bool):
        return str(plain)
    text = str(plain).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


class LabelClasses(BaseModel):
    """The classes of a label column, how they were decided, and the stray values seen."""

    column: str
    classes: list[Scalar]
    positive: Scalar | None
    rule: Literal["data.classes", "schema", "frequency"]
    stray: dict[str, int] = {}
    missing: int = 0

    @property
    def n_classes(self) -> int:
        """How many classes the label has."""
        return len(self.classes)


def _plain(value: Any) -> Scalar:
    item = getattr(value, "item", None)
    result = item() if callable(item) else value
    if isinstance(result, float) and result.is_integer():
        return int(result)
    if not isinstance(result, int | float | str | bool):
        return str(result)
    return result


def decide_classes(
    labels: pd.Series,
    positive: Scalar | None = None,
    classes: Sequence[Scalar] | None = None,
    schema: TableSchema | None = None,
) -> LabelClasses:
    """Decide the classes of ``labels`` (see the module docstring) and resolve ``positive``.

    The returned ``positive`` and ``classes`` are the values as they occur in the column, so
    ``positive: '1'`` becomes ``1`` for a column of numbers. Raises ``DataError`` when the table
    has no data rows, when ``positive`` is not a class, or when fewer than two classes remain.
    """
    counts = labels.dropna().value_counts(sort=False)
    return decide_counted_classes(
        str(labels.name),
        dict(counts.items()),
        int(labels.isna().sum()),
        positive,
        classes,
        schema,
    )


def decide_counted_classes(
    column: str,
    counts: Mapping[Any, int],
    missing: int,
    positive: Scalar | None = None,
    classes: Sequence[Scalar] | None = None,
    schema: TableSchema | None = None,
) -> LabelClasses:
    """:func:`decide_classes` from the label's value counts (in order of first appearance).

    For a table read in batches: count each batch's labels, then decide here.
    """
    if not counts:
        raise DataError(
            f"label column {column!r} has no values in {missing} row(s): nothing to learn"
        )
    by_key: dict[str, tuple[Any, int]] = {}
    for value, count in counts.items():
        key = label_key(value)
        seen = by_key.get(key)
        by_key[key] = (seen[0] if seen else value, int(count) + (seen[1] if seen else 0))
    declared = schema.columns[column].categories if schema and column in schema.columns else None
    wanted = {label_key(positive)} if positive is not None else set()
    rule: Literal["data.classes", "schema", "frequency"]
    if classes is not None:
        rule, allowed = "data.classes", {label_key(c) for c in classes}
    elif declared:
        rule, allowed = "schema", {label_key(c) for c in declared}
    else:
        total = int(sum(counts.values()))
        rule = "frequency"
        allowed = {
            key
            for key, (_, count) in by_key.items()
            if key in wanted or (count >= MIN_CLASS_ROWS and count / total >= MIN_CLASS_SHARE)
        }
    found = sorted((k for k in by_key if k in allowed), key=_order)
    stray = {k: by_key[k][1] for k in sorted(by_key, key=_order) if k not in allowed}
    values = [_plain(by_key[k][0]) for k in found]
    if positive is not None and label_key(positive) not in found:
        raise DataError(
            f"positive class {positive!r} is not a class of label column {column!r}; "
            f"its classes are {values[:_SHOWN]}" + _stray_text(stray)
        )
    if len(found) < 2:
        raise DataError(
            f"label column {column!r} has {len(found)} class(es) {values}: a classifier needs "
            f"at least two" + _stray_text(stray)
        )
    return LabelClasses(
        column=column,
        classes=values,
        positive=_plain(by_key[label_key(positive)][0]) if positive is not None else None,
        rule=rule,
        stray=stray,
        missing=missing,
    )


def _order(key: str) -> tuple[int, float, str]:
    try:
        return (0, float(key), key)
    except ValueError:
        return (1, 0.0, key)


def _stray_text(stray: dict[str, int]) -> str:
    if not stray:
        return ""
    shown = ", ".join(f"{k!r} ({n} row{'s' if n > 1 else ''})" for k, n in list(stray.items())[:5])
    return f"; values too rare to be classes: {shown}"


def stray_labels(
    labels: pd.Series, classes: Sequence[Scalar]
) -> list[tuple[str, np.ndarray, tuple[Any, ...]]]:
    """For each stray label value (and missing labels), its reason, offending rows and rank.

    The rank orders the reasons as they are listed (missing, then values, then the rest).

    Keys are computed once per distinct value, and rows matched with one vectorised ``isin``
    per stray key, so a clean million-row label column costs one pass.
    """
    allowed = {label_key(c) for c in classes}
    expected = f"expected one of {[_plain(c) for c in classes][:_SHOWN]}"
    missing = labels.isna().to_numpy()
    by_key: dict[str, list[Any]] = {}
    for value in labels.dropna().unique():
        key = label_key(value)
        if key not in allowed:
            by_key.setdefault(key, []).append(value)
    found: list[tuple[str, np.ndarray, tuple[Any, ...]]] = []
    if missing.any():
        found.append((f"missing label; {expected}", missing, (0,)))
    keys = sorted(by_key, key=_order)
    for key in keys[:_SHOWN]:
        found.append(
            (
                f"label {key!r} is not a class; {expected}",
                labels.isin(by_key[key]).to_numpy(),
                (1, *_order(key)),
            )
        )
    if len(keys) > _SHOWN:
        rest = [v for key in keys[_SHOWN:] for v in by_key[key]]
        found.append(
            (
                f"{len(keys) - _SHOWN} other labels are not classes; {expected}",
                labels.isin(rest).to_numpy(),
                (2,),
            )
        )
    return found
