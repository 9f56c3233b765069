"""Table schemas: column types, ranges and categories, inferred from data or written by hand."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from mlwarden.data._rules import Rule
from mlwarden.errors import DataError, ParameterError

if TYPE_CHECKING:
    import pandas as pd

ColumnType = Literal["integer", "float", "category", "string", "boolean"]
Scalar = int | float | str | bool

SCHEMA_FORMAT = 1
_MAX_INFERRED_CATEGORIES = 50
#: A text column whose non-missing values are at least this share of numbers is numeric; the
#: rest are typos or placeholders that validation quarantines as "not a number".
NUMERIC_SHARE = 0.95
_EXAMPLES = 5


class ColumnSchema(BaseModel):
    """What one column may hold."""

    model_config = ConfigDict(extra="forbid")

    type: ColumnType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: list[Scalar] | None = None
    unique: bool = False
    regex: str | None = None
    description: str | None = None
    # What inference saw in the reference data; informational, never enforced.
    missing_rate: float | None = None
    frequencies: dict[str, float] | None = None
    non_numeric_rate: float | None = None
    non_numeric_examples: list[str] | None = None

    @field_validator("regex")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ParameterError(f"regex {pattern!r} does not compile: {exc}") from None
        return pattern

    @property
    def is_numeric(self) -> bool:
        """True for integer and float columns, which models take as numbers."""
        return self.type in ("integer", "float")


class TableSchema(BaseModel):
    """The columns of a table, in order, and which one is the label."""

    model_config = ConfigDict(extra="forbid")

    format: int = SCHEMA_FORMAT
    columns: dict[str, ColumnSchema]
    label: str | None = None
    rules: list[Rule] = []

    @property
    def features(self) -> list[str]:
        """Every column but the label, in schema order."""
        return [name for name in self.columns if name != self.label]

    def to_yaml(self) -> str:
        """The schema as YAML a person can edit."""
        document = self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        document = {"format": self.format, **document}
        return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))

    @classmethod
    def from_yaml(cls, path: Path) -> TableSchema:
        """Read a schema file, with a clear error for a missing or malformed one."""
        try:
            raw = yaml.safe_load(path.read_text())
        except FileNotFoundError as exc:
            raise DataError(f"schema file {path} does not exist") from exc
        except yaml.YAMLError as exc:
            raise DataError(f"schema file {path} is not valid YAML: {exc}") from exc
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise DataError(f"schema file {path}: {where}: {first['msg']}") from exc


def infer_column(series: pd.Series, margin: float = 0.0) -> ColumnSchema:
    """Infer one column's type, range or categories, missing rate and uniqueness from its values.

    A column read as text whose values are nearly all numbers (``NUMERIC_SHARE``) is numeric:
    the few values that are not numbers are recorded (``non_numeric_rate``, examples) and
    validation quarantines their rows. ``margin`` widens numeric ranges (see ``widen``).
    """
    import pandas as pd

    values = series.dropna()
    nullable = bool(series.isna().any())
    rate = round(float(series.isna().mean()), 6) if len(series) else 0.0
    if pd.api.types.is_bool_dtype(series):
        return ColumnSchema(type="boolean", nullable=nullable, missing_rate=rate)
    stray: pd.Series | None = None
    if len(values) and not pd.api.types.is_numeric_dtype(values):
        numbers = pd.to_numeric(values.astype(str).str.strip(), errors="coerce")
        if numbers.notna().mean() >= NUMERIC_SHARE:
            stray = values[numbers.isna()]
            values = numbers.dropna().astype("float64")
    integral = pd.api.types.is_float_dtype(values) and bool((values == values.round()).all())
    if pd.api.types.is_numeric_dtype(values) and len(values) > 0:
        kind: ColumnType = (
            "integer" if pd.api.types.is_integer_dtype(values) or integral else "float"
        )
        low, high = widen(float(values.min()), float(values.max()), margin, kind)
        return ColumnSchema(
            type=kind,
            min=low,
            max=high,
            unique=bool(
                kind == "integer"
                and values.is_unique
                and len(values) > 1
                and len(values) == len(series)
            ),
            nullable=nullable,
            missing_rate=rate,
            non_numeric_rate=round(len(stray) / len(series), 6) if stray is not None else None,
            non_numeric_examples=(
                [str(v) for v in stray.unique()[:_EXAMPLES]] if stray is not None else None
            ),
        )
    counts = values.astype(str).value_counts(normalize=True, sort=False)
    if len(counts) <= _MAX_INFERRED_CATEGORIES:
        return ColumnSchema(
            type="category",
            categories=sorted(counts.index),
            frequencies={str(k): round(float(v), 6) for k, v in sorted(counts.items())},
            nullable=nullable,
            missing_rate=rate,
        )
    return ColumnSchema(
        type="string",
        unique=bool(values.is_unique and len(values) == len(series)),
        nullable=nullable,
        missing_rate=rate,
    )


def widen(
    low: float, high: float, margin: float, kind: ColumnType = "float"
) -> tuple[float, float]:
    """A numeric range widened by ``margin`` times its width on each side.

    A constant column widens by ``margin`` times its value's magnitude (at least 1); a range
    that starts at zero or above stays non-negative; integer bounds round outwards. Inferred
    from training rows alone, a range rejects values just outside what training saw, which
    the server answers with a 422; a margin leaves room for them.
    """
    import math

    if margin < 0:
        raise DataError(f"margin must be zero or more, got {margin}")
    if margin == 0:
        return low, high
    width = high - low if high > low else max(abs(low), 1.0)
    new_low, new_high = low - margin * width, high + margin * width
    if low >= 0:
        new_low = max(new_low, 0.0)
    if kind == "integer":
        new_low, new_high = float(math.floor(new_low)), float(math.ceil(new_high))
    return new_low, new_high


def infer_schema(
    frame: pd.DataFrame, label: str | None = None, *, margin: float = 0.0
) -> TableSchema:
    """Infer a schema for every column of ``frame``; edit the result to tighten it.

    ``margin`` widens every numeric feature range (not the label's) by that share of its width
    on each side.
    """
    if label is not None and label not in frame.columns:
        raise DataError(
            f"label column {label!r} is not in the table; columns are {list(frame.columns)}"
        )
    return TableSchema(
        columns={
            str(name): infer_column(frame[name], 0.0 if name == label else margin)
            for name in frame.columns
        },
        label=label,
    )
