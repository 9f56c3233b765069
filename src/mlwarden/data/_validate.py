"""Check a table against its schema, keeping every rejected row with the reasons it broke."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from mlwarden.data._schema import ColumnSchema, TableSchema
from mlwarden.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

REASONS_COLUMN = "_reasons"
_EXAMPLES = 5


class ColumnIssue(BaseModel):
    """How many rows broke one rule of one column, with a few offending values."""

    column: str
    rule: str
    count: int
    examples: list[str]


class ValidationReport(BaseModel):
    """Outcome of validating a table: rows in = rows accepted + rows rejected, always."""

    rows_in: int
    rows_accepted: int
    rows_rejected: int
    unknown_columns: list[str]
    issues: list[ColumnIssue]

    @property
    def rejected_fraction(self) -> float:
        """Share of input rows that were rejected."""
        return self.rows_rejected / self.rows_in if self.rows_in else 0.0


def _check_column(raw: pd.Series, col: ColumnSchema) -> tuple[pd.Series, dict[str, pd.Series]]:
    """Coerce one column to its schema type; return it and a mask of offending rows per rule."""
    import numpy as np
    import pandas as pd

    failures: dict[str, pd.Series] = {}
    missing = raw.isna()
    if col.is_numeric:
        values = pd.to_numeric(raw, errors="coerce")
        failures["not a number"] = values.isna() & ~missing
        if col.type == "integer":
            failures["not an integer"] = values.notna() & (values != np.round(values))
        if col.min is not None:
            failures[f"below min {col.min:g}"] = values < col.min
        if col.max is not None:
            failures[f"above max {col.max:g}"] = values > col.max
        coerced: pd.Series = values.astype("float64")
    elif col.type == "boolean":
        mapping = {"true": True, "false": False, "1": True, "0": False}
        text = raw.astype("string").str.strip().str.lower()
        coerced = text.map(mapping).astype("boolean")
        failures["not a boolean"] = coerced.isna() & ~missing
    else:
        coerced = raw.astype("string").str.strip().astype(object).where(~missing, np.nan)
    if col.categories is not None:
        allowed = {str(c) for c in col.categories}
        as_text = raw.astype("string").str.strip()
        if col.is_numeric:
            as_text = pd.Series(
                [f"{v:g}" if pd.notna(v) else None for v in coerced], index=raw.index
            ).astype("string")
            allowed = {f"{float(c):g}" for c in col.categories}
        failures["not an allowed value"] = ~as_text.isin(allowed) & ~missing
    if not col.nullable:
        failures["missing value"] = missing
    return coerced, {rule: mask.fillna(False).astype(bool) for rule, mask in failures.items()}


def validate_table(
    frame: pd.DataFrame, schema: TableSchema
) -> tuple[pd.DataFrame, pd.DataFrame, ValidationReport]:
    """Split ``frame`` into rows that satisfy ``schema`` and rows that do not.

    Returns the accepted rows (coerced to the schema's types, schema column order), the
    rejected rows as given plus a ``_reasons`` column, and a report with per-column counts.
    A missing schema column makes the whole table unusable and raises ``DataError``.
    """
    import pandas as pd

    absent = [name for name in schema.columns if name not in frame.columns]
    if absent:
        raise DataError(
            f"the table lacks column(s) {absent} that the schema requires; "
            f"it has {list(frame.columns)}"
        )
    unknown = [str(c) for c in frame.columns if c not in schema.columns]
    frame = frame.reset_index(drop=True)
    reasons = pd.Series([""] * len(frame), index=frame.index, dtype=object)
    bad = pd.Series(False, index=frame.index)
    issues: list[ColumnIssue] = []
    accepted_columns: dict[str, pd.Series] = {}
    for name, col in schema.columns.items():
        coerced, failures = _check_column(frame[name], col)
        accepted_columns[name] = coerced
        for rule, mask in failures.items():
            count = int(mask.sum())
            if not count:
                continue
            examples = [repr(v) for v in frame.loc[mask, name].head(_EXAMPLES).tolist()]
            issues.append(ColumnIssue(column=name, rule=rule, count=count, examples=examples))
            reasons[mask] = reasons[mask] + f"{name}: {rule}; "
            bad |= mask
    accepted = pd.DataFrame(accepted_columns)[~bad].reset_index(drop=True)
    for name, col in schema.columns.items():
        if col.type == "integer" and not accepted[name].isna().any():
            accepted[name] = accepted[name].astype("int64")
    rejected = frame[bad].copy()
    rejected[REASONS_COLUMN] = reasons[bad].str.rstrip("; ")
    report = ValidationReport(
        rows_in=len(frame),
        rows_accepted=len(accepted),
        rows_rejected=len(rejected),
        unknown_columns=unknown,
        issues=issues,
    )
    return accepted, rejected.reset_index(drop=True), report
