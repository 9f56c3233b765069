"""The request body generated from the model's training schema.

Each feature column becomes a field: integers and floats with the declared bounds, categories as
an enumeration of the declared values, nullable columns optional. Unknown fields are refused, so
a request with a typo or a missing column is a 422 that names the field and what was expected,
before any guard or the model sees it.

JSON is read as JSON, not coerced: a numeric column takes a JSON number only (``true`` and
``"1"`` are refused, where pydantic's lax mode would read them as 1), floats must be finite
(Python's JSON reader accepts ``NaN`` and ``Infinity``), integers hold whole numbers within
2**53 (beyond, a float no longer holds them exactly), and strings must be encodable as UTF-8
(JSON's ``\\ud800`` escapes decode to lone surrogates, which the decision log cannot store).
"""

from __future__ import annotations

import keyword
import math
import re
import weakref
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, create_model

from mlwarden.data import ColumnSchema, TableSchema
from mlwarden.errors import FormatError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlwarden.serve._extraction import FeatureSpace

_PYTHON_TYPES = {"integer": int, "float": float, "string": str, "boolean": bool, "category": str}
#: Largest integer magnitude a request may hold: every integer up to it is exact as a float.
MAX_EXACT_INTEGER = 2**53
#: Request models whose feature columns are all integers or all floats, with that type: their
#: rows can be read into one numpy matrix (see :class:`RequestRows`).
_MATRIX_TYPES: weakref.WeakKeyDictionary[type[BaseModel], str] = weakref.WeakKeyDictionary()


def _json_number(value: Any, *, integer: bool, expected: str) -> Any:
    """Refuse what lax validation would coerce into a number: booleans, strings, NaN, inf."""
    if isinstance(value, bool):
        raise FormatError(f"{expected} is expected, got the JSON boolean {str(value).lower()}")
    if isinstance(value, str):
        raise FormatError(f"{expected} is expected as a JSON number, got a string")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FormatError(f"{expected} is expected, got {value}")
        if integer:
            if not value.is_integer():
                raise FormatError(f"{expected} is expected, got {value}")
            value = int(value)
    if isinstance(value, int) and integer and abs(value) > MAX_EXACT_INTEGER:
        raise FormatError(f"an integer of magnitude at most 2**53 is expected, got {value:.3g}")
    return value


def _strict_bool(value: Any) -> Any:
    if not isinstance(value, bool):
        raise FormatError(f"a JSON boolean (true or false) is expected, got {type(value).__name__}")
    return value


def _utf8(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError("the string holds an unpaired surrogate (\\ud800-\\udfff)") from None
    return value


def _before(column: ColumnSchema) -> Callable[[Any], Any] | None:
    """The pre-check of a column's JSON value, or None for string columns."""
    if column.type == "boolean":
        return _strict_bool
    if not column.is_numeric:
        return None
    integer = column.type == "integer"
    if column.categories:
        values = [str(c) for c in column.categories]
        listed = f"{', '.join(values[:-1])} or {values[-1]}" if len(values) > 1 else values[0]
        expected = f"one of {listed}"
    else:
        expected = "a whole number" if integer else "a finite number"
    return partial(_json_number, integer=integer, expected=expected)


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
    before = _before(column)
    if before is not None:
        annotation = Annotated[annotation, BeforeValidator(before)]
    elif annotation is str:
        annotation = Annotated[str, AfterValidator(_utf8)]
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
    types = {schema.columns[c].type for c in schema.features}
    if len(types) == 1 and types <= {"integer", "float"}:
        _MATRIX_TYPES[model] = types.pop()
    return model


def rows_of(body: BaseModel) -> list[dict[str, Any]]:
    """The request's rows keyed by their column names, as the model expects them."""
    return [row.model_dump(by_alias=True) for row in body.rows]  # type: ignore[attr-defined]


class RequestRows:
    """One request's rows, encoded once and shared by the model and every guard.

    ``rows`` (dicts by column, as validated) feed the drift monitor and the decision record;
    ``frame`` (the table the model and the shadow read) and ``vectors`` (the extraction
    detectors' feature space) are built on first use and then reused, never rebuilt.

    When every feature column is an integer (or every one a float) and no value is missing,
    the rows are read once into one numpy matrix (``matrix``): the table is built from it
    instead of column by column (the same table: same values, same dtypes), and a model that
    reads a bare numeric matrix (ONNX, torch) is given its columns without any table at all.
    """

    __slots__ = ("_frame", "_matrix", "_vectors", "columns", "dtype", "rows")

    def __init__(
        self, rows: list[dict[str, Any]], columns: list[str], dtype: str | None = None
    ) -> None:
        self.rows = rows
        self.columns = columns
        self.dtype = dtype
        self._frame: pd.DataFrame | None = None
        self._matrix: np.ndarray | bool | None = False  # False: not tried yet
        self._vectors: np.ndarray | None = None

    @classmethod
    def of(cls, body: BaseModel, columns: list[str]) -> RequestRows:
        """The rows of a validated request body, in the schema's ``columns``."""
        return cls(rows_of(body), columns, _MATRIX_TYPES.get(type(body)))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def matrix(self) -> np.ndarray | None:
        """The rows as one int64 (or float64) matrix in ``columns`` order, None unless every
        column is an integer (or every one a float) and no value is missing (built once)."""
        if self._matrix is False:
            self._matrix = None
            if self.dtype is not None:
                import numpy as np

                columns = self.columns
                values = np.array([[row[c] for c in columns] for row in self.rows])
                expected = np.int64 if self.dtype == "integer" else np.float64
                if values.dtype == expected and values.shape == (len(self.rows), len(columns)):
                    self._matrix = values
        return self._matrix  # type: ignore[return-value]

    def matrix_in(self, order: list[str]) -> np.ndarray | None:
        """:attr:`matrix` with its columns in ``order`` (the same names), or None."""
        values = self.matrix
        if values is None or order == self.columns:
            return values
        position = {c: i for i, c in enumerate(self.columns)}
        return values[:, [position[c] for c in order]]

    @property
    def frame(self) -> pd.DataFrame:
        """The rows as a table in schema column order (built once)."""
        if self._frame is None:
            import pandas as pd

            values = self.matrix
            if values is not None:
                self._frame = pd.DataFrame(values, columns=self.columns)
            else:
                self._frame = pd.DataFrame(self.rows, columns=self.columns)
        return self._frame

    def vectors(self, space: FeatureSpace) -> np.ndarray:
        """The rows in the detectors' standardized feature space (built once)."""
        if self._vectors is None:
            values = self.matrix
            if values is not None:
                self._vectors = space.transform_matrix(values, self.columns)
            if self._vectors is None:
                self._vectors = space.transform(self.rows)  # per-row dicts: no table round trip
        return self._vectors
