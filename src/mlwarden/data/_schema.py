"""Table schemas: column types, ranges and categories, inferred from data or written by hand."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from mlwarden.data._rules import Rule
from mlwarden.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

ColumnType = Literal["integer", "float", "category", "string", "boolean"]
Scalar = int | float | str | bool

SCHEMA_FORMAT = 1
_MAX_INFERRED_CATEGORIES = 50


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

    @field_validator("regex")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"regex {pattern!r} does not compile: {exc}") from None
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


def infer_column(series: pd.Series) -> ColumnSchema:
    """Infer one column's type, range or categories, missing rate and uniqueness from its values."""
    import pandas as pd

    values = series.dropna()
    nullable = bool(series.isna().any())
    rate = round(float(series.isna().mean()), 6) if len(series) else 0.0
    if pd.api.types.is_bool_dtype(series):
        return ColumnSchema(type="boolean", nullable=nullable, missing_rate=rate)
    integral = pd.api.types.is_float_dtype(series) and bool((values == values.round()).all())
    if pd.api.types.is_numeric_dtype(values) and len(values) > 0:
        kind: ColumnType = (
            "integer" if pd.api.types.is_integer_dtype(series) or integral else "float"
        )
        return ColumnSchema(
            type=kind,
            min=float(values.min()),
            max=float(values.max()),
            unique=bool(
                kind == "integer"
                and values.is_unique
                and len(values) > 1
                and len(values) == len(series)
            ),
            nullable=nullable,
            missing_rate=rate,
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


def infer_schema(frame: pd.DataFrame, label: str | None = None) -> TableSchema:
    """Infer a schema for every column of ``frame``; edit the result to tighten it."""
    if label is not None and label not in frame.columns:
        raise DataError(
            f"label column {label!r} is not in the table; columns are {list(frame.columns)}"
        )
    return TableSchema(
        columns={str(name): infer_column(frame[name]) for name in frame.columns}, label=label
    )
