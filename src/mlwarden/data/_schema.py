"""Table schemas: column types, ranges and categories, inferred from data or written by hand."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from mlwarden.data._rules import Rule
from mlwarden.errors import DataError, ParameterError

ColumnType = Literal["integer", "float", "category", "string", "boolean"]
Scalar = int | float | str | bool

SCHEMA_FORMAT = 1
#: A text column whose non-missing values are at least this share of numbers is numeric; the
#: rest are typos or placeholders that validation quarantines as "not a number".
NUMERIC_SHARE = 0.95


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
