"""The request body generated from the model's training schema.

Each feature column becomes a field: integers and floats with the declared bounds, categories as
an enumeration of the declared values, nullable columns optional. Unknown fields are refused, so
a request with a typo or a missing column is a 422 that names the field and what was expected,
before any guard or the model sees it.
"""

from __future__ import annotations

import keyword
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from mlwarden.data import ColumnSchema, TableSchema

_PYTHON_TYPES = {"integer": int, "float": float, "string": str, "boolean": bool, "category": str}


def _field_name(column: str, taken: set[str]) -> str:
    """A valid, unique Python identifier for a column (the column stays the JSON name)."""
    name = re.sub(r"\W", "_", column) or "column"
    if name[0].isdigit() or keyword.iskeyword(name) or name.startswith("_"):
        name = f"f_{name.lstrip('_')}"
    while name in taken or name in ("model_config", "model_fields"):
        name += "_"
    taken.add(name)
    return name


def _annotation(column: ColumnSchema) -> Any:
    if column.categories:
        values = tuple(column.categories)
        if column.type == "float":
            return float  # float categories compare badly as literals; bounds still apply
        return Literal[values]
    base = _PYTHON_TYPES[column.type]
    return float if base is int and column.type == "float" else base


def _field(column: ColumnSchema, name: str) -> tuple[Any, Any]:
    annotation = _annotation(column)
    bounds: dict[str, Any] = {}
    if column.is_numeric and not column.categories:
        if column.min is not None:
            bounds["ge"] = column.min
        if column.max is not None:
            bounds["le"] = column.max
    if column.nullable:
        return annotation | None, Field(default=None, alias=name, **bounds)
    return annotation, Field(alias=name, **bounds)


def row_model(schema: TableSchema) -> type[BaseModel]:
    """A pydantic model of one feature row of ``schema``, strict about names and types."""
    taken: set[str] = set()
    fields = {
        _field_name(column, taken): _field(schema.columns[column], column)
        for column in schema.features
    }
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        "Row",
        __config__=ConfigDict(extra="forbid", populate_by_name=False, strict=False),
        **fields,
    )
    return model


def request_model(schema: TableSchema, max_rows: int) -> type[BaseModel]:
    """The ``/v1/predict`` body: ``{"rows": [row, ...]}`` with 1 to ``max_rows`` rows."""
    row: Any = row_model(schema)
    model: type[BaseModel] = create_model(
        "PredictRequest",
        __config__=ConfigDict(extra="forbid"),
        rows=(list[row], Field(min_length=1, max_length=max_rows)),
    )
    return model


def rows_of(body: BaseModel) -> list[dict[str, Any]]:
    """The request's rows keyed by their column names, as the model expects them."""
    return [row.model_dump(by_alias=True) for row in body.rows]  # type: ignore[attr-defined]
