"""Validate a table batch by batch, in bounded memory, with the answer of one whole-table pass.

A big table is read in record batches; each batch is checked by the same code as
:func:`validate_table`, and what spans batches is carried between them: the values seen in
``unique`` columns (64-bit hashes), the report's counts and first examples, and the row hashes
that find duplicates. Accepted rows go to a Parquet file and quarantined rows to a CSV file as
they are found, so memory holds a few batches and never the table; the accepted rows, the
quarantined rows and the report equal those of one :func:`validate_table` call on the whole
table (pinned by tests). Two rare cases need a second pass over the accepted rows, at the end:
an integer column that could hold missing values (written as floats) but turned out to hold
none (today's table types it int64), and duplicates dropped by policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mlwarden.data._duplicates import Duplicates, duplicates_of, row_hashes
from mlwarden.data._schema import Scalar, TableSchema
from mlwarden.data._validate import (
    REASONS_COLUMN,
    ROW_COLUMN,
    CheckedBatch,
    ColumnIssue,
    MissingPolicy,
    ValidationReport,
    check_batch,
    check_policies,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

_EXAMPLES = 5
DUPLICATE_REASON = "duplicate of an earlier accepted row (policy: drop)"


def _merge_order(
    order: list[tuple[str, str]],
    batch: list[tuple[str, str]],
    ranks: dict[tuple[str, str], tuple[Any, ...]],
) -> None:
    """Add the rules first checked in ``batch`` to ``order``, each after its predecessor.

    Rules made per value (stray labels) go among their column's others by ``ranks``, as one
    pass over the whole table would list them.
    """
    known = set(order)
    at = 0
    for key in batch:
        if key in known:
            at = order.index(key) + 1
            continue
        rank = ranks.get(key)
        if rank is not None:
            while (
                at < len(order)
                and order[at][0] == key[0]
                and order[at] in ranks
                and ranks[order[at]] < rank
            ):
                at += 1
        order.insert(at, key)
        known.add(key)
        at += 1


class TableCheck:
    """Validates a table given in batches; accepted rows to ``clean``, quarantine to a CSV.

    Parameters
    ----------
    schema, missing, label_classes
        As for :func:`validate_table`.
    quarantine : Path
        CSV file the quarantined rows are written to as they are found (``_row`` first,
        ``_reasons`` last, as ``validate_table`` returns them).
    clean : Path, optional
        Parquet file for the accepted rows, typed, with ``_row``; none: not kept.
    label : str, optional
        Find duplicate accepted rows (features and this label); see :meth:`finish`.
    """

    def __init__(
        self,
        schema: TableSchema,
        missing: Mapping[str, MissingPolicy] | None = None,
        *,
        label_classes: Sequence[Scalar] | None = None,
        quarantine: Path,
        clean: Path | None = None,
        label: str | None = None,
    ) -> None:
        self.schema = schema
        self.policies = check_policies(schema, missing)
        self.label_classes = label_classes
        self.quarantine = quarantine
        self.clean = clean
        self.label = label
        self.rows = 0
        self.accepted = 0
        self._unique: dict[str, np.ndarray] = {
            n: _no_hashes() for n, c in schema.columns.items() if c.unique
        }
        self._issues: dict[tuple[str, str], ColumnIssue] = {}
        self._order: list[tuple[str, str]] = []
        self._ranks: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._missing: dict[str, int] = {}
        self._failures: dict[str, int] = {}
        self._absent: list[str] = []
        self._unknown: list[str] = []
        self._header: list[str] | None = None
        self._writer: pq.ParquetWriter | None = None
        self._arrow: pa.Schema | None = None
        self._floats = self._maybe_missing_integers()
        self._seen_missing: set[str] = set()
        self._hashes: list[tuple[np.ndarray, np.ndarray]] = []

    def _maybe_missing_integers(self) -> set[str]:
        """Integer columns whose missing values are accepted: they travel as floats (NaN)."""
        found = set()
        for name, col in self.schema.columns.items():
            if col.type != "integer" or (name == self.schema.label and self.label_classes):
                continue
            policy = self.policies.get(name)
            action = policy.action if policy else ("keep" if col.nullable else None)
            if action in ("keep", "impute"):
                found.add(name)
        return found

    def add(self, batch: pd.DataFrame) -> None:
        """Check the table's next rows (in order, after those already added)."""
        checked = check_batch(
            batch,
            self.schema,
            self.policies,
            self.label_classes,
            offset=self.rows,
            earlier=self._unique,
        )
        self._merge(checked)
        self._write_quarantined(checked.quarantined)
        accepted = self._typed(checked.accepted)
        self.accepted += len(accepted)
        if self.label is not None:
            self._hashes.append(self._row_hashes(accepted))
        if self.clean is not None:
            self._write_accepted(accepted)
        self.rows += checked.rows

    def _merge(self, checked: CheckedBatch) -> None:
        import numpy as np

        if self.rows == 0:
            self._absent, self._unknown = checked.absent, checked.unknown
        self._ranks.update(checked.ranks)
        _merge_order(self._order, checked.checked, self._ranks)
        for issue in checked.issues:
            key = (issue.column, issue.rule)
            seen = self._issues.get(key)
            if seen is None:
                self._issues[key] = issue.model_copy()
            else:
                seen.count += issue.count
                seen.examples = (seen.examples + issue.examples)[:_EXAMPLES]
        for name, count in checked.missing.items():
            self._missing[name] = self._missing.get(name, 0) + count
        for name, count in checked.failures.items():
            self._failures[name] = self._failures.get(name, 0) + count
        for name, hashes in checked.hashes.items():  # kept sorted: two runs merge in O(n)
            self._unique[name] = np.sort(
                np.concatenate([self._unique[name], np.sort(hashes)]), kind="stable"
            )

    def _typed(self, accepted: pd.DataFrame) -> pd.DataFrame:
        """Integer columns as int64, or as float64 where missing values may be accepted."""
        for name, col in self.schema.columns.items():
            if col.type != "integer" or name not in accepted:
                continue
            if name in self._floats:
                accepted[name] = accepted[name].astype("float64")
                if accepted[name].isna().any():
                    self._seen_missing.add(name)
            elif accepted[name].dtype.kind == "f":
                accepted[name] = accepted[name].astype("int64")
        return accepted

    def _row_hashes(self, accepted: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        assert self.label is not None
        columns = [c for c in accepted.columns if c != ROW_COLUMN]
        features = [c for c in columns if c != self.label]
        labels = [self.label] if self.label in columns else []
        return row_hashes(accepted, features), row_hashes(accepted, labels)

    def _write_quarantined(self, rows: pd.DataFrame) -> None:
        if self._header is None:
            self._header = [str(c) for c in rows.columns]
            rows.iloc[0:0].to_csv(self.quarantine, index=False)
        if len(rows):
            rows.to_csv(self.quarantine, mode="a", header=False, index=False)

    def _write_accepted(self, accepted: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:
            self._arrow = _arrow_schema(accepted)
            table = pa.Table.from_pandas(accepted, schema=self._arrow, preserve_index=False)
            self._arrow = table.schema  # with pandas' metadata, so dtypes read back the same
            assert self.clean is not None
            self._writer = pq.ParquetWriter(self.clean, self._arrow, compression="zstd")
        else:
            table = pa.Table.from_pandas(accepted, schema=self._arrow, preserve_index=False)
        if len(accepted) or self.accepted == 0:
            self._writer.write_table(table)

    def finish(
        self, duplicates: Literal["report", "drop"] | None = None
    ) -> tuple[ValidationReport, Duplicates | None]:
        """Close the files; the report, and duplicates among accepted rows when asked.

        With ``drop``, rows that repeat an earlier accepted row (same features and label) leave
        the accepted rows and are appended to the quarantine with their reason; the report
        still counts them accepted (they broke no rule, and nothing of theirs is lost).
        """
        if self._writer is not None:
            self._writer.close()
        found: Duplicates | None = None
        repeated = None
        if duplicates is not None and self.label is not None:
            found, repeated = self._duplicates(duplicates)
            if duplicates != "drop" or not found.duplicate_rows:
                repeated = None
        narrow = sorted(self._floats - self._seen_missing)
        if self.clean is not None and (repeated is not None or narrow):
            self._rewrite(repeated, narrow)
        return self._report(), found

    def _duplicates(self, policy: str) -> tuple[Duplicates, np.ndarray]:
        import numpy as np

        x = np.concatenate([h[0] for h in self._hashes]) if self._hashes else _no_hashes()
        y = np.concatenate([h[1] for h in self._hashes]) if self._hashes else _no_hashes()
        self._hashes = []
        found, repeated = duplicates_of(x, y)
        update: dict[str, Any] = {"policy": policy}
        if policy == "drop" and found.duplicate_rows:
            update["dropped"] = found.duplicate_rows
        return found.model_copy(update=update), repeated

    def _rewrite(self, repeated: np.ndarray | None, narrow: list[str]) -> None:
        """Second pass over the accepted rows: drop duplicates, narrow float integer columns."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        assert self.clean is not None and self._arrow is not None
        source = self.clean.with_name(self.clean.name + ".pass1")
        self.clean.replace(source)
        done = 0
        writer: pq.ParquetWriter | None = None
        for part in pq.ParquetFile(source).iter_batches(batch_size=_REWRITE_ROWS):
            frame = part.to_pandas()
            for name in narrow:
                frame[name] = frame[name].astype("int64")
            if repeated is not None:
                mask = repeated[done : done + len(frame)]
                if mask.any():
                    dropped = frame[mask].copy()
                    dropped[REASONS_COLUMN] = DUPLICATE_REASON
                    assert self._header is not None
                    dropped.reindex(columns=self._header).to_csv(
                        self.quarantine, mode="a", header=False, index=False
                    )
                    frame = frame[~mask]
            done += len(part)
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                schema = _arrow_schema(frame)
                table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
                writer = pq.ParquetWriter(self.clean, table.schema, compression="zstd")
            writer.write_table(table.cast(writer.schema))
        if writer is not None:
            writer.close()
        source.unlink()

    def _report(self) -> ValidationReport:
        n = self.rows
        issues = [self._issues[key] for key in self._order if key in self._issues]
        rejected = n - self.accepted
        return ValidationReport(
            rows_in=n,
            rows_accepted=self.accepted,
            rows_rejected=rejected,
            unknown_columns=self._unknown,
            missing_columns=self._absent,
            issues=issues,
            missing_rates={c: (m / n if n else 0.0) for c, m in self._missing.items()},
            missing_failures=self._failures,
        )


_REWRITE_ROWS = 200_000


def _no_hashes() -> np.ndarray:
    import numpy as np

    return np.zeros(0, dtype=np.uint64)


def _arrow_schema(frame: pd.DataFrame) -> pa.Schema:
    """The Parquet types of accepted rows, decided by dtype so no batch types them otherwise."""
    import pandas as pd
    import pyarrow as pa

    fields = []
    for name, dtype in frame.dtypes.items():
        if pd.api.types.is_bool_dtype(dtype):
            kind: pa.DataType = pa.bool_()
        elif pd.api.types.is_integer_dtype(dtype):
            kind = pa.int64()
        elif pd.api.types.is_float_dtype(dtype):
            kind = pa.float64()
        else:
            kind = pa.string()
        fields.append(pa.field(str(name), kind))
    return pa.schema(fields)


def validate_batches(
    batches: Iterable[pd.DataFrame],
    schema: TableSchema,
    missing: Mapping[str, MissingPolicy] | None = None,
    *,
    quarantine: Path,
    label_classes: Sequence[Scalar] | None = None,
) -> ValidationReport:
    """Validate a table given in batches; the quarantine goes to a CSV file as it is found.

    The report equals :func:`validate_table`'s on the whole table; nothing but a few batches
    and the hashes of ``unique`` columns is held in memory.
    """
    check = TableCheck(schema, missing, label_classes=label_classes, quarantine=quarantine)
    for batch in batches:
        check.add(batch)
    return check.finish()[0]
