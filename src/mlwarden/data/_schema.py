"""Table schemas: column types, ranges and categories, inferred from data or written by hand."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

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
    description: str | None = None

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

    @property
    def features(self) -> list[str]:
        """Every column but the label, in schema order."""
        return [name for name in self.columns if name != self.label]

    def to_yaml(self) -> str:
        """The schema as YAML a person can edit."""
        return str(yaml.safe_dump(self.model_dump(exclude_none=True), sort_keys=False))

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
    """Infer one column's type, range or categories from its values."""
    import pandas as pd

    values = series.dropna()
    nullable = bool(series.isna().any())
    if pd.api.types.is_bool_dtype(series):
        return ColumnSchema(type="boolean", nullable=nullable)
    integral = pd.api.types.is_float_dtype(series) and bool((values == values.round()).all())
    if pd.api.types.is_integer_dtype(series) or (integral and len(values) > 0):
        return ColumnSchema(
            type="integer",
            nullable=nullable,
            min=float(values.min()) if len(values) else None,
            max=float(values.max()) if len(values) else None,
        )
    if pd.api.types.is_numeric_dtype(values):
        return ColumnSchema(
            type="float",
            nullable=nullable,
            min=float(values.min()) if len(values) else None,
            max=float(values.max()) if len(values) else None,
        )
    distinct = sorted({str(v) for v in values})
    if len(distinct) <= _MAX_INFERRED_CATEGORIES:
        return ColumnSchema(type="category", nullable=nullable, categories=list(distinct))
    return ColumnSchema(type="string", nullable=nullable)


def infer_schema(frame: pd.DataFrame, label: str | None = None) -> TableSchema:
    """Infer a schema for every column of ``frame``; edit the result to tighten it."""
    if label is not None and label not in frame.columns:
        raise DataError(
            f"label column {label!r} is not in the table; columns are {list(frame.columns)}"
        )
    return TableSchema(
        columns={str(name): infer_column(frame[name]) for name in frame.columns}, label=label
    )
