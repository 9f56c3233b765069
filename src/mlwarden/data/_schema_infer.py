"""Schema inference from data, over a whole table or batch by batch with the same answer.

Both paths keep the same running facts per column (row and missing counts, the numbers' range,
up to 51 category counts, whether values repeat) and apply the inference rules once, at the end,
so a table read in batches of any size gets exactly the schema of the table read whole.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from mlwarden.data._schema import NUMERIC_SHARE, ColumnSchema, ColumnType, TableSchema, widen
from mlwarden.errors import DataError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

_MAX_INFERRED_CATEGORIES = 50
_EXAMPLES = 5
_Group = Literal["boolean", "numeric", "text"]


class _Distinct:
    """Whether all values added so far differ: exactly within a batch, by 64-bit hash across.

    The first batch is hashed only when a second arrives, so a table read whole costs no
    hashing. Hashes are kept as sorted runs of doubling length (a binary-search lookup per run,
    O(n log n) merging overall). Two distinct values among n share a hash with chance about
    n^2 / 2^65 (3e-6 at 10 M values, 1e-5 at 20 M), which would call a unique column not unique.
    """

    def __init__(self) -> None:
        self._first: np.ndarray | None = None
        self._runs: list[np.ndarray] = []

    def add(self, keys: np.ndarray) -> bool:
        """Add one batch's keys, distinct among themselves; False if any was added before."""
        import numpy as np

        if not len(keys):
            return True
        if self._first is None and not self._runs:
            self._first = keys
            return True
        if self._first is not None:
            self._runs.append(np.sort(_hash(self._first)))
            self._first = None
        fresh = np.sort(_hash(keys))
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, fresh), len(run) - 1)
            if bool((run[at] == fresh).any()):
                return False
        while self._runs and len(self._runs[-1]) <= len(fresh):
            # two sorted runs: the stable sort (timsort) merges them in linear time
            fresh = np.sort(np.concatenate([self._runs.pop(), fresh]), kind="stable")
        self._runs.append(fresh)
        return True


def _hash(keys: np.ndarray) -> np.ndarray:
    import pandas as pd

    return pd.util.hash_array(keys, categorize=False)


def _number_keys(values: pd.Series) -> np.ndarray:
    """Integral numbers as int64, so 3 and 3.0 (an int batch and a float batch) hash alike."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_integer_dtype(values):
        return values.to_numpy(dtype=np.int64)  # uint64 above 2**63 keeps its bits
    numbers = values.to_numpy(dtype=np.float64)
    fits = np.abs(numbers) < 2.0**63  # -0.0 becomes 0, equal as pandas compares them
    keys = numbers.view(np.int64).copy()  # the rest (inf, huge) by their bits
    keys[fits] = numbers[fits].astype(np.int64)
    return keys


def _group_of(series: pd.Series) -> _Group:
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    return "numeric" if pd.api.types.is_numeric_dtype(series) else "text"


class _ColumnFacts:
    """Running facts about one column, enough to apply the inference rules to all its values."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.group: _Group | None = None
        self.rows = 0
        self.missing = 0
        self.numbers = 0  # non-missing values that are numbers (all of them in a numeric column)
        self.low = math.inf
        self.high = -math.inf
        self.integral = True
        self.strays = 0
        self.stray_examples: list[Any] = []
        self.counts: dict[str, int] | None = {}
        self.distinct_numbers: _Distinct | None = _Distinct()
        self.distinct_texts: _Distinct | None = _Distinct()

    def check(self, series: pd.Series) -> _Group:
        """The column's kind of dtype in this batch; a change from earlier batches is an error."""
        group = _group_of(series)
        if self.group is not None and group != self.group:
            raise DataError(
                f"column {self.name!r} is {series.dtype} in this batch but {self.group} in "
                "earlier ones; every batch of one table needs the same dtype per column"
            )
        return group

    def update(self, series: pd.Series, group: _Group) -> None:
        """Add one batch of the column's values."""
        self.group = group
        missing = series.isna()
        n_missing = int(missing.sum())
        self.rows += len(series)
        self.missing += n_missing
        if n_missing:
            self.distinct_numbers = self.distinct_texts = None
        if group == "boolean":
            return
        values = series[~missing] if n_missing else series
        if group == "numeric":
            self._add_numbers(values, len(values))
        elif len(values):
            self._add_texts(values)

    def _add_numbers(self, values: pd.Series, count: int, repeats: bool = False) -> None:
        """Add ``count`` numbers whose distinct values are all in ``values``."""
        import pandas as pd

        if not count:
            return
        self.numbers += count
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))
        if pd.api.types.is_float_dtype(values):
            self.integral = self.integral and bool((values == values.round()).all())
        elif not pd.api.types.is_integer_dtype(values):
            self.integral = False
        if self.distinct_numbers is not None and (
            repeats
            or not (self.integral and values.is_unique)
            or not self.distinct_numbers.add(_number_keys(values))
        ):
            self.distinct_numbers = None

    def _add_texts(self, values: pd.Series) -> None:
        """Parse each distinct text once: a category column costs a few parses per batch."""
        import numpy as np
        import pandas as pd

        texts = values.astype(str)
        codes, uniques = pd.factorize(texts)
        counts = np.bincount(codes, minlength=len(uniques))
        numbers = pd.to_numeric(pd.Series(uniques).str.strip(), errors="coerce")
        parsed = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
        is_number = ~np.isnan(parsed)
        count = int(counts[is_number].sum())
        if count < len(values):
            self.distinct_numbers = None
            self.strays += len(values) - count
            if len(self.stray_examples) < _EXAMPLES:
                for value in values[~is_number[codes]].unique():
                    if value not in self.stray_examples:
                        self.stray_examples.append(value)
                        if len(self.stray_examples) == _EXAMPLES:
                            break
        self._add_numbers(pd.Series(parsed[is_number]), count, len(uniques) < len(values))
        if self.counts is not None:
            if len(uniques) > _MAX_INFERRED_CATEGORIES:
                self.counts = None
            else:
                for text, n in zip(uniques, counts, strict=True):
                    self.counts[str(text)] = self.counts.get(str(text), 0) + int(n)
                if len(self.counts) > _MAX_INFERRED_CATEGORIES:
                    self.counts = None
        if self.distinct_texts is not None and (
            not values.is_unique or not self.distinct_texts.add(texts.to_numpy(dtype=object))
        ):
            self.distinct_texts = None

    def result(self, margin: float) -> ColumnSchema:
        """The column's schema from everything added (the rules of ``infer_column``)."""
        nullable = self.missing > 0
        rate = round(self.missing / self.rows, 6) if self.rows else 0.0
        if self.group == "boolean":
            return ColumnSchema(type="boolean", nullable=nullable, missing_rate=rate)
        present = self.rows - self.missing
        from_text = self.group == "text" and present > 0 and self.numbers / present >= NUMERIC_SHARE
        if from_text or (self.group == "numeric" and present > 0):
            kind: ColumnType = "integer" if self.integral else "float"
            low, high = widen(self.low, self.high, margin, kind)
            return ColumnSchema(
                type=kind,
                min=low,
                max=high,
                unique=bool(
                    kind == "integer"
                    and self.distinct_numbers is not None
                    and self.numbers > 1
                    and self.numbers == self.rows
                ),
                nullable=nullable,
                missing_rate=rate,
                non_numeric_rate=round(self.strays / self.rows, 6) if from_text else None,
                non_numeric_examples=([str(v) for v in self.stray_examples] if from_text else None),
            )
        if self.counts is not None:
            return ColumnSchema(
                type="category",
                categories=sorted(self.counts),
                frequencies={k: round(c / present, 6) for k, c in sorted(self.counts.items())},
                nullable=nullable,
                missing_rate=rate,
            )
        return ColumnSchema(
            type="string",
            unique=self.distinct_texts is not None and present == self.rows,
            nullable=nullable,
            missing_rate=rate,
        )


class SchemaInference:
    """Accumulates batches of one table; result() is infer_schema(whole table).

    For tables too big to hold at once: memory per column is bounded by 51 category counts
    plus, while a column may still be unique, one 64-bit hash per value (dropped at the first
    repeat or missing value; see ``_Distinct`` for the collision chance). Every batch must have
    the same columns, in order, with the same kind of dtype (bool, numeric or other) per column.
    """

    def __init__(self, label: str | None = None, *, margin: float = 0.0) -> None:
        if margin < 0:
            raise DataError(f"margin must be zero or more, got {margin}")
        self.label = label
        self.margin = margin
        self._names: list[Any] | None = None
        self._columns: list[_ColumnFacts] = []

    def update(self, batch: pd.DataFrame) -> None:
        """Add the next batch of rows."""
        names = list(batch.columns)
        if self._names is None:
            if self.label is not None and self.label not in batch.columns:
                raise DataError(
                    f"label column {self.label!r} is not in the table; columns are {names}"
                )
            if len({str(name) for name in names}) != len(names):
                raise DataError(f"column names repeat in {names}; each needs a distinct name")
            columns = [_ColumnFacts(str(name)) for name in names]
        elif names != self._names:
            raise DataError(
                f"batch columns {names} differ from the first batch's {self._names}; "
                "every batch of one table needs the same columns in the same order"
            )
        else:
            columns = self._columns
        groups = [facts.check(batch.iloc[:, i]) for i, facts in enumerate(columns)]
        for i, (facts, group) in enumerate(zip(columns, groups, strict=True)):
            facts.update(batch.iloc[:, i], group)
        self._names, self._columns = names, columns

    def result(self) -> TableSchema:
        """The schema of every row added so far."""
        if self._names is None:
            raise DataError("no rows to infer a schema from: call update() with a batch first")
        return TableSchema(
            columns={
                facts.name: facts.result(0.0 if name == self.label else self.margin)
                for name, facts in zip(self._names, self._columns, strict=True)
            },
            label=self.label,
        )


def infer_column(series: pd.Series, margin: float = 0.0) -> ColumnSchema:
    """Infer one column's type, range or categories, missing rate and uniqueness from its values.

    A column read as text whose values are nearly all numbers (``NUMERIC_SHARE``) is numeric:
    the few values that are not numbers are recorded (``non_numeric_rate``, examples) and
    validation quarantines their rows. ``margin`` widens numeric ranges (see ``widen``).
    """
    facts = _ColumnFacts(str(series.name))
    facts.update(series, facts.check(series))
    return facts.result(margin)


def infer_schema(
    frame: pd.DataFrame, label: str | None = None, *, margin: float = 0.0
) -> TableSchema:
    """Infer a schema for every column of ``frame``; edit the result to tighten it.

    ``margin`` widens every numeric feature range (not the label's) by that share of its width
    on each side. The same as ``SchemaInference`` fed ``frame`` in one batch.
    """
    inference = SchemaInference(label, margin=margin)
    inference.update(frame)
    return inference.result()
