"""Check a table against its schema: every row is accepted or quarantined with its reasons.

Rows in = rows accepted + rows quarantined, always. Each column rule and each cross-column
rule is one vectorised pass over the data; reason strings are built for offending rows only, so
a clean batch of a million rows costs little more than reading it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from mlwarden.data._rules import rule_violations
from mlwarden.data._schema import ColumnSchema, Scalar, TableSchema

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

REASONS_COLUMN = "_reasons"
ROW_COLUMN = "_row"
_EXAMPLES = 5


class MissingPolicy(BaseModel):
    """What to do with a column's missing values.

    ``fail``: any missing value fails the batch; ``drop``: rows missing it are quarantined;
    ``impute``: filled with ``strategy`` fitted on training rows only; ``keep``: left for the
    model's own handling.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Literal["fail", "drop", "impute", "keep"] = "keep"
    strategy: Literal["mean", "median", "most_frequent", "constant"] | None = None
    value: Scalar | None = None

    @model_validator(mode="after")
    def _strategy_fits_action(self) -> MissingPolicy:
        if self.action == "impute" and self.strategy is None:
            raise ValueError(
                "action 'impute' needs a strategy: mean, median, most_frequent or constant"
            )
        if self.action != "impute" and self.strategy is not None:
            raise ValueError(f"a strategy only applies to action 'impute', not {self.action!r}")
        if self.strategy == "constant" and self.value is None:
            raise ValueError("strategy 'constant' needs a value")
        return self


class ColumnIssue(BaseModel):
    """How many rows broke one rule of one column (or one cross-column rule), with examples."""

    column: str
    rule: str
    count: int
    examples: list[str]


class ValidationReport(BaseModel):
    """Outcome of validating a table: rows in = rows accepted + rows quarantined, always."""

    rows_in: int
    rows_accepted: int
    rows_rejected: int
    unknown_columns: list[str]
    missing_columns: list[str] = []
    issues: list[ColumnIssue]
    missing_rates: dict[str, float] = {}
    missing_failures: dict[str, int] = {}

    @property
    def rejected_fraction(self) -> float:
        """Share of input rows that were quarantined."""
        return self.rows_rejected / self.rows_in if self.rows_in else 0.0


class _Findings:
    """Offending-row masks with their reasons, and the issues for the report."""

    def __init__(self, n: int) -> None:
        import numpy as np

        self.bad = np.zeros(n, dtype=bool)
        self.masks: list[tuple[np.ndarray, str]] = []
        self.issues: list[ColumnIssue] = []

    def add(self, column: str, rule: str, mask: np.ndarray, raw: pd.Series | None) -> None:
        count = int(mask.sum())
        if not count:
            return
        examples: list[str] = []
        if raw is not None:
            examples = [repr(v) for v in raw[mask][:_EXAMPLES].tolist()]
        self.issues.append(ColumnIssue(column=column, rule=rule, count=count, examples=examples))
        self.masks.append((mask, f"{column}: {rule}"))
        self.bad |= mask

    def reasons(self) -> np.ndarray:
        import numpy as np

        rows = np.flatnonzero(self.bad)
        text = np.full(len(rows), "", dtype=object)
        for mask, reason in self.masks:
            hit = mask[rows]
            text[hit] = text[hit] + reason + "; "
        return np.array([t[:-2] for t in text], dtype=object)


def _numeric(raw: pd.Series, col: ColumnSchema, found: _Findings, name: str) -> np.ndarray:
    import numpy as np
    import pandas as pd

    missing = raw.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        values = raw.to_numpy(dtype="float64", na_value=np.nan)
    else:
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        found.add(name, "not a number", np.isnan(values) & ~missing, raw)
    present = ~np.isnan(values)
    if col.type == "integer" and not pd.api.types.is_integer_dtype(raw):
        found.add(
            name,
            "not an integer",
            present & (np.mod(values, 1, where=present, out=np.zeros_like(values)) != 0),
            raw,
        )
    if col.min is not None:
        found.add(name, f"below min {col.min:g}", values < col.min, raw)
    if col.max is not None:
        found.add(name, f"above max {col.max:g}", values > col.max, raw)
    if col.categories is not None:
        allowed = np.array([float(c) for c in col.categories])
        found.add(name, "not an allowed value", present & ~np.isin(values, allowed), raw)
    return values


def _text(raw: pd.Series, col: ColumnSchema, found: _Findings, name: str) -> pd.Series:
    import pandas as pd

    missing = raw.isna().to_numpy()
    as_text = (
        raw
        if pd.api.types.is_object_dtype(raw) or pd.api.types.is_string_dtype(raw)
        else (raw.astype(str).where(~raw.isna()))
    )
    if col.type == "boolean":
        mapping = {"true": True, "false": False, "1": True, "0": False, "True": True,
                   "False": False, True: True, False: False}  # fmt: skip
        booleans = raw.map(mapping)
        found.add(name, "not a boolean", (booleans.isna().to_numpy() & ~missing), raw)
        return booleans.astype("boolean")
    if col.categories is not None:
        allowed = [str(c) for c in col.categories]
        found.add(name, "not an allowed value", ~as_text.isin(allowed).to_numpy() & ~missing, raw)
    if col.regex is not None:
        matched = as_text.astype("string").str.fullmatch(col.regex).fillna(True)
        found.add(name, f"does not match {col.regex!r}", ~matched.to_numpy(dtype=bool), raw)
    return as_text


def validate_table(
    frame: pd.DataFrame,
    schema: TableSchema,
    missing: Mapping[str, MissingPolicy] | None = None,
    *,
    row_ids: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame, ValidationReport]:
    """Split ``frame`` into rows that satisfy ``schema`` and quarantined rows with reasons.

    Returns the accepted rows (coerced to the schema's types, in schema column order), the
    quarantined rows as given plus ``_row`` (position in ``frame``) and ``_reasons``, and a
    report with per-column counts and examples. A column the schema requires but the table
    lacks quarantines every row, so nothing is silently accepted. With ``row_ids`` the accepted
    rows carry ``_row`` too, so later steps can say which input rows they dropped.
    """
    import numpy as np
    import pandas as pd

    policies = dict(missing or {})
    unknown_policy = sorted(set(policies) - set(schema.columns))
    if unknown_policy:
        from mlwarden.errors import DataError

        raise DataError(f"missing-value policies name unknown column(s) {unknown_policy}")
    n = len(frame)
    found = _Findings(n)
    absent = [name for name in schema.columns if name not in frame.columns]
    unknown = [str(c) for c in frame.columns if c not in schema.columns]
    for name in absent:
        found.add(name, "column is missing from the table", np.ones(n, dtype=bool), None)
    coerced: dict[str, Any] = {}
    rates: dict[str, float] = {}
    failures: dict[str, int] = {}
    for name, col in schema.columns.items():
        if name in absent:
            continue
        raw = frame[name]
        is_missing = raw.isna().to_numpy()
        rates[name] = float(is_missing.mean()) if n else 0.0
        coerced[name] = (
            _numeric(raw, col, found, name) if col.is_numeric else _text(raw, col, found, name)
        )
        if col.unique:
            found.add(name, "duplicate value", raw.duplicated().to_numpy() & ~is_missing, raw)
        policy = policies.get(name, MissingPolicy(action="keep" if col.nullable else "fail"))
        if is_missing.any():
            if policy.action == "fail" and not col.nullable and name not in policies:
                found.add(name, "missing value", is_missing, None)
            elif policy.action == "fail":
                failures[name] = int(is_missing.sum())
                found.add(name, "missing value (policy: fail)", is_missing, None)
            elif policy.action == "drop":
                found.add(name, "missing value (policy: drop)", is_missing, None)
    typed = pd.DataFrame(coerced, index=frame.index)
    for rule in schema.rules:
        if rule.columns() <= set(typed.columns):
            found.add(f"rule {rule.name}", rule.expr, rule_violations(rule, typed), None)
    accepted = typed[~found.bad].reset_index(drop=True) if not absent else typed.iloc[0:0]
    for name, col in schema.columns.items():
        if col.type == "integer" and name in accepted and not accepted[name].isna().any():
            accepted[name] = accepted[name].astype("int64")
    if row_ids:
        accepted.insert(0, ROW_COLUMN, np.flatnonzero(~found.bad)[: len(accepted)])
    quarantined = frame[found.bad].copy()
    quarantined.insert(0, ROW_COLUMN, np.flatnonzero(found.bad))
    quarantined[REASONS_COLUMN] = found.reasons()
    report = ValidationReport(
        rows_in=n,
        rows_accepted=len(accepted),
        rows_rejected=len(quarantined),
        unknown_columns=unknown,
        missing_columns=absent,
        issues=found.issues,
        missing_rates=rates,
        missing_failures=failures,
    )
    return accepted, quarantined.reset_index(drop=True), report
