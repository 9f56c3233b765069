"""Reading a CSV table the way users write them: comma, semicolon, tab or pipe separated.

The separator is detected from the header and the first lines (the candidate that splits them
all into the same, largest number of fields), unless the caller names it. A file with a header
and no data rows is an error that says so, rather than a table that fails later for no clear
reason.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

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


def read_csv_table(data: bytes, name: str, sep: str | None = None) -> pd.DataFrame:
    """Parse CSV bytes into a table; ``name`` says which file in error messages.

    Raises ``DataError`` for bytes that are not a CSV table and for a table with no data rows.
    """
    import pandas as pd

    used = sep if sep is not None else detect_separator(data)
    try:
        # One type per column for the whole file: chunked inference (low_memory) can type the
        # same column int in one chunk and text in the next, and no later step can use that.
        frame = pd.read_csv(io.BytesIO(data), sep=used, low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{name} is empty: expected a header line and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{name} is not a readable CSV table: {exc}") from exc
    if frame.empty and len(frame.columns):
        raise DataError(
            f"{name} has a header ({len(frame.columns)} columns) but 0 data rows; "
            "expected at least one row under the header"
        )
    return frame
