"""Byte forms of step artifacts: tables as Parquet, results as canonical JSON."""

from __future__ import annotations

import io
import json
import math
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from mlwarden.data import ROW_COLUMN
from mlwarden.lineage import canonical_json

if TYPE_CHECKING:
    import pandas as pd

    from mlwarden.pipeline._context import Output

Outputs = dict[str, "Output"]

PARQUET = "application/vnd.apache.parquet"
JSON = "application/json"
CSV = "text/csv"


ROW_ID = ROW_COLUMN


def label_parts(frame: pd.DataFrame, label: str) -> tuple[pd.DataFrame, pd.Series]:
    """Features and label of a split; the row id column is neither."""
    return frame.drop(columns=[c for c in (label, ROW_ID) if c in frame.columns]), frame[label]


def table_bytes(frame: pd.DataFrame) -> bytes:
    """A table as Parquet bytes; the same frame always gives the same bytes."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow", compression="zstd")
    return buffer.getvalue()


def read_table(data: bytes) -> pd.DataFrame:
    """Parquet bytes back to a table."""
    import pandas as pd

    return pd.read_parquet(io.BytesIO(data), engine="pyarrow")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_bytes(value: BaseModel | dict[str, Any] | list[Any]) -> bytes:
    """A result as canonical JSON bytes; NaN and infinities (undefined scores) become null."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return canonical_json(_finite(value))


def read_json(data: bytes) -> Any:
    """JSON bytes back to Python values."""
    return json.loads(data)
