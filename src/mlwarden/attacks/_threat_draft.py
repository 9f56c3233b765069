"""A starter threat model for a user's own table: every feature, with values seen in the data.

The evasion check needs a threat model naming the table's columns. Writing one from nothing is
the step users skip, so :func:`draft_threat_model` derives one from the data -- allowed values
for columns with few distinct values, the observed range for numeric columns -- with the same
explicit cost for every feature, and :func:`draft_threat_model_yaml` writes it with comments
saying what each field means and what the user must decide (real costs, immutable features).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from mlwarden.attacks._threat_model import FeatureConstraint, Scalar, ThreatModel
from mlwarden.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["draft_threat_model", "draft_threat_model_yaml"]

#: A numeric column with at most this many distinct values is listed by its values.
MAX_LISTED_NUMBERS = 10
#: A text column lists at most this many of its most frequent values.
MAX_LISTED_VALUES = 20
#: Cost of one change in a drafted threat model (for a range: of a move across all of it).
DEFAULT_COST = 1.0
_GRID = 10  # steps of a numeric range


def draft_threat_model(
    frame: pd.DataFrame, label: str, *, target: Scalar | None = None
) -> ThreatModel:
    """A threat model listing every column of ``frame`` but ``label``, with values from the data.

    Each feature costs :data:`DEFAULT_COST` to change: a column with few distinct values (at
    most :data:`MAX_LISTED_NUMBERS` numbers, or text, booleans, categories) lists the values
    seen (text: the :data:`MAX_LISTED_VALUES` most frequent); other numeric columns get their
    observed ``min``/``max`` and a cost per unit that makes a move across the whole range cost
    :data:`DEFAULT_COST` (integer columns get a whole ``step``). ``target``, the class the
    attacker wants, defaults to the label's most frequent class. Columns with no value at all
    are left out. These defaults make the draft usable as is; they are not real costs.
    """
    return _draft(frame, label, target)[0]


def draft_threat_model_yaml(
    frame: pd.DataFrame,
    label: str,
    *,
    target: Scalar | None = None,
    source: str = "the table",
    path: str | None = None,
) -> str:
    """The :func:`draft_threat_model` of ``frame`` as commented YAML, ready to edit.

    The text loads with :meth:`ThreatModel.from_yaml` as it is; the comments say what each
    field means, where each feature's values came from, and what to edit. ``source`` names
    the table and ``path`` the file the text goes to, for the comments.
    """
    threat, notes, skipped = _draft(frame, label, target)
    lines = [
        f"# Threat model drafted by `mlwarden threat-model init` from {source} (label: {label}).",
        "# It says what an attacker may change in one row to make the model predict `target`.",
        "# Every feature below starts controllable at the same cost; edit it before trusting",
        "# an evasion verdict:",
        "#   - set real costs: what a change costs the attacker (money, time, effort), in any",
        "#     unit as long as it is the same for all features and for the check's cost_budget;",
        "#   - delete (or comment out) every feature the attacker cannot change (immutable:",
        "#     e.g. an account's age, a value the server computes); unlisted features never move;",
        "#   - narrow `values` or `min`/`max` to what the attacker can really reach.",
        "# Fields of a feature:",
        "#   values: the values it may be set to (the row's own value always stays possible);",
        "#   cost: for `values`, the cost of one change; for `min`/`max`, the cost per unit of",
        "#     change, so moving twice as far costs twice as much (all costs must be > 0);",
        "#   value_costs: optional, for `values` only: cost of setting the feature *to* a value,",
        "#     e.g. {premium: 5.0}, where some values are dearer than others;",
        "#   min, max, step: a numeric range and its grid (without step: ten equal steps).",
        f"# Default cost here: {DEFAULT_COST:g} per change; for a range, 1/(max - min) per unit,",
        f"# so a move across the whole observed range costs {DEFAULT_COST:g}.",
        f"# Use it in a policy: {{check: evasion, threat_model: {path or 'THIS_FILE.yaml'},",
        "#   cost_budget: 2, max_success: 0.05}  (see the README, 'Threat models').",
        "",
        "# target: the class the attacker wants the model to predict"
        + ("" if target is not None else " (here: the most frequent class; edit if wrong)"),
        f"target: {_dump(threat.target)}",
        f"description: {_dump(threat.description)}",
        "# max_changes: the most features one row may change (null: only the cost budget limits)",
        "max_changes: null",
        "features:",
    ]
    for name, constraint in threat.features.items():
        spec = constraint.model_dump(exclude_none=True)
        if constraint.numeric and all(float(spec[k]).is_integer() for k in ("min", "max", "step")):
            spec.update({k: int(spec[k]) for k in ("min", "max", "step")})
        lines.append(f"  {_dump({name: spec})[1:-1]}  # {notes[name]}")
    for name in skipped:
        lines.append(f"  # {name}: left out, the column has no values in {source}")
    text = "\n".join(lines) + "\n"
    ThreatModel.from_yaml_text(text, source="drafted threat model")  # it must load as written
    return text


def _draft(
    frame: pd.DataFrame, label: str, target: Scalar | None
) -> tuple[ThreatModel, dict[str, str], list[str]]:
    """The drafted threat model, a note per feature on where its values came from, skips."""
    if label not in frame.columns:
        raise DataError(
            f"--label: the table has no column {label!r}; its columns are "
            f"{', '.join(map(str, frame.columns[:10]))}"
            + (f" and {len(frame.columns) - 10} more" if len(frame.columns) > 10 else "")
        )
    classes = frame[label].dropna()
    if classes.empty:
        raise DataError(f"--label: column {label!r} has no values, so no class to attack")
    counts = classes.value_counts()
    known = [_python(v) for v in counts.index]
    target = known[0] if target is None else _match_class(target, known, label)
    features: dict[str, FeatureConstraint] = {}
    notes: dict[str, str] = {}
    skipped: list[str] = []
    for column in frame.columns:
        if column == label:
            continue
        drafted = _feature(frame[column])
        if drafted is None:
            skipped.append(str(column))
            continue
        features[str(column)], notes[str(column)] = drafted
    if not features:
        raise DataError(f"the table has no feature with values besides the label {label!r}")
    threat = ThreatModel(
        target=target,
        description=f"Starter threat model for {len(features)} features; costs not set yet.",
        features=features,
        max_changes=None,
    )
    return threat, notes, skipped


def _feature(column: pd.Series) -> tuple[FeatureConstraint, str] | None:
    """One column's constraint and a note saying where it came from; None if all missing."""
    import pandas as pd

    values = column.dropna()
    if values.empty:
        return None
    missing = f", {column.isna().sum()} missing" if column.isna().any() else ""
    dtype = column.dtype
    is_bool = pd.api.types.is_bool_dtype(dtype)
    is_number = pd.api.types.is_numeric_dtype(dtype) and not is_bool
    distinct = values.unique()
    finite = values[values.abs() < math.inf] if is_number else values
    if is_number and finite.nunique() > MAX_LISTED_NUMBERS:
        lo, hi = float(finite.min()), float(finite.max())
        integer = pd.api.types.is_integer_dtype(dtype)
        step = max(1, math.ceil((hi - lo) / _GRID)) if integer else (hi - lo) / _GRID
        cost = float(f"{DEFAULT_COST / (hi - lo):.3g}")
        lo_v: float = int(lo) if integer else lo
        hi_v: float = int(hi) if integer else hi
        constraint = FeatureConstraint(min=lo_v, max=hi_v, step=_round(step), cost=cost)
        kind = "integer" if integer else "number"
        return constraint, f"{kind} range seen in the data, {len(distinct)} distinct{missing}"
    counts = values.value_counts()
    counts = counts[counts > 0]  # a categorical column counts its unused categories too
    listed = [_python(v) for v in counts.index[:MAX_LISTED_VALUES]]
    if is_number or is_bool:
        listed.sort()
    else:
        listed.sort(key=str)
    shown = (
        f"all {len(distinct)} values seen"
        if len(listed) == len(distinct)
        else f"the {len(listed)} most frequent of {len(distinct)} values seen"
    )
    return FeatureConstraint(values=listed, cost=DEFAULT_COST), f"{shown}{missing}"


def _match_class(target: Scalar, known: list[Any], label: str) -> Scalar:
    """The label class ``target`` names (``--target 1`` names the class 1 of a numeric label)."""
    for value in known:
        if value == target or str(value) == str(target):
            return value  # type: ignore[no-any-return]
    raise DataError(
        f"--target: got {target!r}; expected one of the classes of {label!r}: "
        f"{', '.join(map(str, known[:10]))}"
    )


def _python(value: Any) -> Any:
    """A numpy scalar as the Python value YAML can write."""
    return value.item() if hasattr(value, "item") else value


def _round(step: float) -> float:
    return float(f"{step:.6g}")


def _dump(value: Any) -> str:
    """``value`` as one line of flow-style YAML (a mapping keeps its braces)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=math.inf, sort_keys=False)
    return str(text).removesuffix("\n...\n").strip()
