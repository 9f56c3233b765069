"""A fixed numeric feature space for distances between tabular queries.

The extraction detectors of :mod:`mlwarden.serve._extraction` compare a client's queries with
each other (PRADA, Juuti et al., EuroS&P 2019, uses L2 distances between inputs) and with
training rows (off-manifold tests). Raw tabular rows have mixed types and scales, so every
row is first mapped to one standardized vector:

* numeric columns are centred and scaled by statistics of the reference (training) rows:
  median and IQR / 1.349 (``"robust"``, the IQR of a normal is 1.349 standard deviations, so
  both scalings agree on normal columns) or mean and standard deviation (``"standard"``); a
  column with no spread falls back to its standard deviation, then to 1;
* categorical columns become one indicator per known category, each worth ``sqrt(1/2)`` so
  that two rows differing in one category are at distance 1, like a one-sigma numeric gap;
  an unknown category encodes as all zeros (half as far from each known one);
* a missing value (None, NaN, or an absent key) is the reference median (0 after centring
  for ``"robust"``) for numeric columns and all zeros for categorical ones.

:meth:`FeatureSpace.transform` takes a DataFrame, one row as a dict, or a list of dicts; a
single dict is encoded without pandas, in a few microseconds, as the server needs per request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from mlwarden.errors import DataError, ParameterError

if TYPE_CHECKING:
    import pandas as pd

    from mlwarden.data import TableSchema

__all__ = ["FeatureSpace", "Scaling"]

Scaling = Literal["robust", "standard"]
"""How numeric columns are scaled: median / IQR, or mean / standard deviation."""

FloatArray = NDArray[np.float64]

_IQR_TO_STD = 1.349
_INDICATOR = math.sqrt(0.5)
_MAX_CATEGORIES = 100


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, pd.NA raises TypeError below
    except TypeError:
        return True


class FeatureSpace:
    """Standardized numeric vectors for schema'd tabular rows.

    Build one with :meth:`fit`; ``__init__`` only stores the fitted statistics.

    Parameters
    ----------
    numeric : sequence of str
        Numeric columns, in output order.
    centre, scale : array of shape (len(numeric),)
        Subtracted from and dividing each numeric column.
    categories : dict of str to list of str
        For each categorical column, its known categories (as strings), in output order
        after the numeric columns.
    """

    def __init__(
        self,
        numeric: Sequence[str],
        centre: FloatArray,
        scale: FloatArray,
        categories: Mapping[str, Sequence[str]],
    ) -> None:
        self.numeric = [str(c) for c in numeric]
        self.centre = np.asarray(centre, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        if self.centre.shape != (len(self.numeric),) or self.scale.shape != self.centre.shape:
            raise DataError("centre and scale need one value per numeric column")
        if np.any(~np.isfinite(self.scale)) or np.any(self.scale <= 0):
            raise DataError("scale must be finite and positive")
        self.categories = {str(k): [str(v) for v in vals] for k, vals in categories.items()}
        self._offsets: dict[str, int] = {}
        self._index: dict[str, dict[str, int]] = {}
        position = len(self.numeric)
        for name, values in self.categories.items():
            self._offsets[name] = position
            self._index[name] = {value: i for i, value in enumerate(values)}
            position += len(values)
        self.n_features = position
        # The standardized value of a missing numeric: the reference median.
        self._missing = np.zeros(len(self.numeric))

    @property
    def columns(self) -> list[str]:
        """Input columns read: numeric first, then categorical."""
        return [*self.numeric, *self.categories]

    def blocks(self) -> list[tuple[str, slice, bool]]:
        """Each input column's slice of the output vector, and whether it is numeric."""
        numeric = [(name, slice(j, j + 1), True) for j, name in enumerate(self.numeric)]
        categorical = [
            (name, slice(self._offsets[name], self._offsets[name] + len(values)), False)
            for name, values in self.categories.items()
        ]
        return numeric + categorical

    @classmethod
    def fit(
        cls,
        reference: pd.DataFrame,
        schema: TableSchema | None = None,
        *,
        scaling: Scaling = "robust",
        max_categories: int = _MAX_CATEGORIES,
    ) -> FeatureSpace:
        """Learn centres, scales and categories from reference (training) rows.

        Parameters
        ----------
        reference : DataFrame
            Training rows; the label column, if present and named by ``schema``, is ignored.
        schema : TableSchema, optional
            Declares which columns are numeric (integer, float, boolean) and the categories
            of the others; without it, numeric dtypes are numeric and the categories are the
            values seen.
        scaling : {"robust", "standard"}
            Median / (IQR / 1.349), or mean / standard deviation.
        max_categories : int
            Most categories kept per column without declared categories (the most frequent).

        Returns
        -------
        FeatureSpace
        """
        import pandas as pd

        if scaling not in ("robust", "standard"):
            raise ParameterError(f"scaling must be 'robust' or 'standard', got {scaling!r}")
        if len(reference) == 0:
            raise DataError("the reference table has no rows")
        if schema is not None:
            columns = [c for c in schema.features if c in reference.columns]
            absent = [c for c in schema.features if c not in reference.columns]
            if absent:
                raise DataError(f"the reference table lacks the schema columns {absent}")
        else:
            columns = [str(c) for c in reference.columns]
        numeric: list[str] = []
        categories: dict[str, list[str]] = {}
        for name in columns:
            declared = schema.columns[name] if schema is not None else None
            series = reference[name]
            if declared is not None:
                is_numeric = declared.is_numeric or declared.type == "boolean"
            else:
                is_numeric = pd.api.types.is_numeric_dtype(series)
            if is_numeric:
                numeric.append(name)
            elif declared is not None and declared.categories:
                categories[name] = [str(v) for v in declared.categories]
            else:
                counts = series.dropna().astype(str).value_counts()
                categories[name] = sorted(str(v) for v in counts.index[:max_categories])
        centre = np.zeros(len(numeric))
        scale = np.ones(len(numeric))
        for j, name in enumerate(numeric):
            values = pd.to_numeric(reference[name], errors="coerce").to_numpy(dtype=np.float64)
            values = values[np.isfinite(values)]
            if len(values) == 0:
                continue
            std = float(values.std())
            if scaling == "robust":
                q1, median, q3 = np.percentile(values, [25, 50, 75])
                centre[j], spread = median, (q3 - q1) / _IQR_TO_STD
            else:
                centre[j], spread = float(values.mean()), std
            scale[j] = spread if spread > 0 else (std if std > 0 else 1.0)
        space = cls(numeric, centre, scale, categories)
        if scaling == "standard":
            # A missing numeric is the reference median, standardized.
            for j, name in enumerate(numeric):
                present = pd.to_numeric(reference[name], errors="coerce").dropna()
                if len(present):
                    space._missing[j] = (float(present.median()) - centre[j]) / scale[j]
        return space

    def transform(
        self, rows: pd.DataFrame | Mapping[Any, Any] | Sequence[Mapping[Any, Any]]
    ) -> Any:
        """Encode rows as standardized vectors.

        Parameters
        ----------
        rows : DataFrame, dict or list of dicts
            One dict gives a vector of shape (n_features,); a DataFrame or a list of dicts a
            matrix of shape (n, n_features). Absent columns count as missing.

        Returns
        -------
        ndarray of float64
        """
        import pandas as pd

        if isinstance(rows, Mapping):
            return self._one(rows)
        if isinstance(rows, pd.DataFrame):
            return self._frame(rows)
        if isinstance(rows, Sequence) and not isinstance(rows, str | bytes):
            if len(rows) == 0:
                return np.zeros((0, self.n_features))
            return np.vstack([self._one(row) for row in rows])
        raise DataError(
            f"rows must be a DataFrame, a dict or a list of dicts, got {type(rows).__name__}"
        )

    def transform_matrix(self, values: Any, columns: Sequence[str]) -> FloatArray | None:
        """Rows given as one numeric matrix (``columns`` names its columns), encoded as
        :meth:`transform` encodes them one by one as dicts; None when the space has
        categorical columns or reads a column the matrix lacks (then encode the dicts)."""
        if self.categories:
            return None
        position = {name: i for i, name in enumerate(columns)}
        if any(name not in position for name in self.numeric):
            return None
        block = np.asarray(values)[:, [position[name] for name in self.numeric]]
        block = block.astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            standardized = (block - self.centre) / self.scale
        # as _one: a value that is not finite is the missing value (not its standardization)
        return np.asarray(np.where(np.isfinite(block), standardized, self._missing))

    def _one(self, row: Mapping[Any, Any]) -> FloatArray:
        out = np.zeros(self.n_features)
        for j, name in enumerate(self.numeric):
            value: Any = row.get(name)
            if _is_missing(value):
                out[j] = self._missing[j]
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise DataError(f"column {name!r} needs a number, got {value!r}") from None
            out[j] = (
                (number - self.centre[j]) / self.scale[j]
                if math.isfinite(number)
                else (self._missing[j])
            )
        for name, index in self._index.items():
            value = row.get(name)
            if _is_missing(value):
                continue
            position = index.get(str(value))
            if position is not None:
                out[self._offsets[name] + position] = _INDICATOR
        return out

    def _frame(self, frame: pd.DataFrame) -> FloatArray:
        import pandas as pd

        n = len(frame)
        out = np.zeros((n, self.n_features))
        for j, name in enumerate(self.numeric):
            if name not in frame.columns:
                out[:, j] = self._missing[j]
                continue
            column = frame[name]
            if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
                values = column.to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                values = pd.to_numeric(column, errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan
                )
                bad = np.isnan(values) & ~column.isna().to_numpy()
                if bad.any():
                    example = column[bad].iloc[0]
                    raise DataError(f"column {name!r} needs numbers, got {example!r}")
            standardized = (values - self.centre[j]) / self.scale[j]
            out[:, j] = np.where(np.isfinite(standardized), standardized, self._missing[j])
        for name, index in self._index.items():
            if name not in frame.columns:
                continue
            column = frame[name]
            present = ~column.isna().to_numpy()
            codes = (
                column.astype(object)
                .where(present, None)
                .map(lambda v, index=index: -1 if v is None else index.get(str(v), -1))
            )
            codes_array = np.asarray(codes, dtype=np.int64)
            known = codes_array >= 0
            out[np.flatnonzero(known), self._offsets[name] + codes_array[known]] = _INDICATOR
        return out
