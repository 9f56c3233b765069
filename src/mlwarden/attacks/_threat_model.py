"""Threat models for tabular evasion: which features an attacker controls, to what, at what cost.

A threat model is a spec a person writes (YAML, read with line numbers for errors) or takes
from those bundled with mlwarden; :func:`mlwarden.attacks.tabular_evasion` searches within it.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlwarden._yaml_lines import parse_mapping, validation_error
from mlwarden.errors import ParameterError, SpecError

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd

__all__ = ["FeatureConstraint", "Scalar", "ThreatModel", "bundled_threat_model"]

Scalar: TypeAlias = bool | int | float | str
"""A feature value a threat model may name."""

EPS = 1e-9
"""Tolerance on costs and grid steps."""
_DEFAULT_GRID = 10
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
        n = math.floor((hi - lo) / step + EPS)
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
        columns = column_names(X)
        unknown = [name for name in self.features if name not in columns]
        if unknown:
            raise SpecError(_foreign_columns_message(unknown, self.features, columns))
        for name, constraint in self.features.items():
            _check_values(name, constraint, column_dtype(X, name))


def bundled_threat_model(name: str) -> ThreatModel:
    """A threat model shipped with mlwarden, e.g. ``bundled_threat_model("phishing")``."""
    resource = resources.files("mlwarden").joinpath("_specs", f"{name}_threat_model.yaml")
    if not resource.is_file():
        raise SpecError(f"no bundled threat model named {name!r}")
    return ThreatModel.from_yaml_text(resource.read_text(), source=f"{name}_threat_model.yaml")


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


def column_names(X: Any) -> list[str]:
    """The table's column names as the threat model names them (``"0"``, ``"1"``... for arrays)."""
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        return [str(c) for c in X.columns]
    array = np.asarray(X)
    if array.ndim != 2:
        raise ParameterError(f"X must be a table (2-D), got shape {array.shape}")
    return [str(j) for j in range(array.shape[1])]


def column_dtype(X: Any, name: str) -> Any:
    """The dtype of column ``name`` (an array's one dtype)."""
    import pandas as pd

    if isinstance(X, pd.DataFrame):
        return X[name].dtype
    return np.asarray(X).dtype


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
