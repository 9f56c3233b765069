"""Reading a CSV table the way users write them: comma, semicolon, tab or pipe separated.

The separator is detected from the header and the first lines (the candidate that splits them
all into the same, largest number of fields), unless the caller names it. A file with a header
and no data rows is an error that says so, rather than a table that fails later for no clear
reason. A big file streams in batches (``csv_batches``) typed exactly as the file read whole.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlwarden.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

#: Separators tried when none is given, in order of preference on a tie.
SEPARATORS = (",", ";", "\t", "|")
_SNIFF_LINES = 20
_SNIFF_BYTES = 64 * 1024


def detect_separator(data: bytes) -> str:
    """The separator that splits the first lines of ``data`` into the most, equal, fields.

    A comma wins ties and is the answer when no candidate splits the lines consistently.
    """
    text = data[:_SNIFF_BYTES].decode("utf-8", errors="replace")
    lines = text.splitlines()
    if len(data) > _SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last one may be cut short
    lines = [line for line in lines[:_SNIFF_LINES] if line.strip()]
    best, best_fields = ",", 1
    for sep in SEPARATORS:
        widths = {len(row) for row in csv.reader(lines, delimiter=sep)}
        if len(widths) == 1 and (fields := widths.pop()) > best_fields:
            best, best_fields = sep, fields
    return best


@contextmanager
def _parsing(name: str) -> Iterator[None]:
    """Turn pandas' parse failures into one ``DataError`` that names the file."""
    import pandas as pd

    try:
        yield
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{name} is empty: expected a header line and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{name} is not a readable CSV table: {exc}") from exc


def _has_rows(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    if frame.empty and len(frame.columns):
        raise DataError(
            f"{name} has a header ({len(frame.columns)} columns) but 0 data rows; "
            "expected at least one row under the header"
        )
    return frame


def read_csv_table(data: bytes, name: str, sep: str | None = None) -> pd.DataFrame:
    """Parse CSV bytes into a table; ``name`` says which file in error messages.

    Raises ``DataError`` for bytes that are not a CSV table and for a table with no data rows.
    """
    import pandas as pd

    used = sep if sep is not None else detect_separator(data)
    with _parsing(name):
        # One type per column for the whole file: chunked inference (low_memory) can type the
        # same column int in one chunk and text in the next, and no later step can use that.
        frame = pd.read_csv(io.BytesIO(data), sep=used, low_memory=False)
    return _has_rows(frame, name)


def csv_batches(
    path: Path, name: str, sep: str | None = None, *, rows: int = 200_000
) -> Iterator[pd.DataFrame]:
    """The CSV at ``path`` in batches of ``rows`` rows, typed as ``read_csv_table`` types it whole.

    Two passes keep memory to a few batches: the first reads every batch with pandas' own
    inference and merges their types into the one pandas gives the whole file
    (``_whole_file_kind``); the second reads again with those types fixed.
    Raises the same ``DataError`` as ``read_csv_table``.
    """
    if rows < 1:
        raise DataError(f"rows={rows} for {name}: expected a batch size of at least 1 row")
    if sep is None:
        with path.open("rb") as head:
            sep = detect_separator(head.read(_SNIFF_BYTES))
    kinds: dict[str, set[str]] = {}
    overflow: set[str] = set()
    for batch in _read_batches(path, name, sep, rows, {}):
        for column in batch.columns:
            kinds.setdefault(column, set()).add(_batch_kind(batch[column]))
            if column not in overflow and _beyond_int64(batch[column]):
                overflow.add(column)
    final = {column: _whole_file_kind(found) for column, found in kinds.items()}
    final.update(_overflow_kinds(path, name, sep, overflow))
    boxed = [column for column, kind in final.items() if kind in (_BOOL_NA, _BIGINT)]
    big = [column for column, kind in final.items() if kind in (_UINT, _BIGINT)]
    for batch in _read_batches(path, name, sep, rows, _fixed_types(final)):
        for column in big:  # Python's int reads them as pandas does, padding and all
            batch[column] = batch[column].map(int, na_action="ignore")
            if final[column] == _UINT:
                batch[column] = batch[column].astype("uint64")
        if boxed:
            batch[boxed] = batch[boxed].astype(object)
        yield batch


def _read_batches(
    path: Path, name: str, sep: str, rows: int, options: dict[str, Any]
) -> Iterator[pd.DataFrame]:
    """Batches as pandas reads them, each typed on its own unless ``options`` fix the types."""
    import pandas as pd

    with _parsing(name):
        # low_memory=False: pandas types each batch as one block, never half a batch each way
        reader = pd.read_csv(path, sep=sep, low_memory=False, chunksize=rows, **options)
        with reader:
            first = True
            for batch in reader:
                yield _has_rows(batch, name) if first else batch
                first = False


def _fixed_types(final: dict[str, str]) -> dict[str, Any]:
    """``read_csv`` options that read each column as its whole-file kind."""
    dtype = {column: _READ_AS[kind] for column, kind in final.items() if kind in _READ_AS}
    if _RAW_TEXT not in final.values():
        return {"dtype": dtype}
    from pandas._libs.parsers import STR_NA_VALUES

    # Raw text keeps 'NA' and '' as written; every other column still reads them as missing.
    missing = sorted(STR_NA_VALUES)
    return {
        "dtype": dtype,
        "keep_default_na": False,
        "na_values": {column: missing for column, kind in final.items() if kind != _RAW_TEXT},
    }


# What one batch of a column looked like to pandas' inference.
_EMPTY, _INT, _UINT, _BIGINT = "empty", "int", "uint", "bigint"
_FLOAT, _BOOL, _BOOL_NA, _TEXT = "float", "bool", "bool_na", "text"
_RAW_TEXT = "raw_text"  # text with no missing values: what pandas leaves after a failed uint64
_INT64_LIMIT = 2.0**63
_INT64_DIGITS = 19  # the fewest digits of an integer outside int64
# How pass 2 reads each whole-file kind; the others are read as pandas likes and boxed to object.
_READ_AS: dict[str, Any] = {
    _INT: "int64",
    _UINT: str,  # then each value to a Python int, then uint64
    _FLOAT: "float64",
    _BOOL: "bool",
    _TEXT: str,
    _RAW_TEXT: str,
    _BIGINT: str,  # then each value to a Python int
}


def _batch_kind(column: pd.Series) -> str:
    """The kind of one batch of a column, as pandas inferred it."""
    kind = column.dtype.kind
    if kind == "i":
        return _INT
    if kind == "u":
        return _UINT
    if kind == "f":
        return _EMPTY if bool(column.isna().all()) else _FLOAT
    if kind == "b":
        return _BOOL
    if column.dtype == object:
        values = column.dropna()
        if values.map(type).isin([bool]).all():
            return _BOOL_NA
        if values.map(type).isin([int]).all():
            return _BIGINT
    return _TEXT


def _beyond_int64(column: pd.Series) -> bool:
    """Whether a batch may hold an integer outside int64 (its whole-file type needs every value)."""
    kind = column.dtype.kind
    if kind in "iub":
        return kind == "u"
    if kind == "f":
        return bool((column.abs() >= _INT64_LIMIT).any())
    text = column.dropna().astype(str)
    if not len(text) or text.str.len().max() < _INT64_DIGITS:
        return False
    return bool(text.str.fullmatch(rf"\s*[+-]?\d{{{_INT64_DIGITS},}}\s*").any())


def _overflow_kinds(path: Path, name: str, sep: str, columns: set[str]) -> dict[str, str]:
    """The whole-file kinds of the columns holding integers outside int64, read whole.

    There pandas' result hangs on the order of the values (an overflow retries the column as
    uint64, then as Python ints, and a missing or negative value met then turns it to text),
    so only the column itself tells. Only these columns are held whole; they are rare.
    """
    import pandas as pd

    if not columns:
        return {}
    with _parsing(name):
        frame = pd.read_csv(path, sep=sep, low_memory=False, usecols=sorted(columns))
    from pandas._libs.parsers import STR_NA_VALUES

    found = {}
    for column in frame.columns:
        kind = _batch_kind(frame[column])
        if kind == _TEXT and frame[column].isin(STR_NA_VALUES).any():
            kind = _RAW_TEXT
        found[column] = _FLOAT if kind == _EMPTY else kind
    return found


def _whole_file_kind(kinds: set[str]) -> str:
    """The kind pandas gives the whole column, from the kinds of its batches.

    For a column with no integer outside int64, pandas tries int64, float64, bool and text, in
    that order, on all the values at once: a missing value rules out int64 (and makes a bool
    column object, as does a batch that is all missing), True next to a number is text.
    """
    if _TEXT in kinds:
        return _TEXT
    if kinds & {_BOOL, _BOOL_NA}:
        if kinds - {_BOOL, _BOOL_NA, _EMPTY}:
            return _TEXT  # True next to a number is neither bool nor number
        return _BOOL if kinds == {_BOOL} else _BOOL_NA
    return _FLOAT if kinds & {_FLOAT, _EMPTY} else _INT
