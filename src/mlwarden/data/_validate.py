"""Check a table against its schema: every row is accepted or quarantined with its reasons.

Rows in = rows accepted + rows quarantined, always. Each column rule and each cross-column
rule is one vectorised pass over the data; reason strings are built for offending rows only, so
a clean batch of a million rows costs little more than reading it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from mlwarden.data._labels import LabelClasses, _plain, label_key, stray_labels
from mlwarden.data._rules import rule_violations
from mlwarden.data._schema import ColumnSchema, Scalar, TableSchema
from mlwarden.errors import ParameterError

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
            raise ParameterError(
                "action 'impute' needs a strategy: mean, median, most_frequent or constant"
            )
        if self.action != "impute" and self.strategy is not None:
            raise ParameterError(f"a strategy only applies to action 'impute', not {self.action!r}")
        if self.strategy == "constant" and self.value is None:
            raise ParameterError("strategy 'constant' needs a value")
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
        self.checked: list[tuple[str, str]] = []  # every rule checked, in report order
        self.ranks: dict[tuple[str, str], tuple[Any, ...]] = {}  # of rules made per value

    def add(
        self,
        column: str,
        rule: str,
        mask: np.ndarray,
        raw: pd.Series | None,
        rank: tuple[Any, ...] | None = None,
    ) -> None:
        import numpy as np

        self.checked.append((column, rule))
        if rank is not None:
            self.ranks[(column, rule)] = rank
        count = int(mask.sum())
        if not count:
            return
        examples: list[str] = []
        if raw is not None:
            first = np.flatnonzero(mask)[:_EXAMPLES]
            examples = [repr(v) for v in raw.iloc[first].tolist()]
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


Check = tuple[str, "np.ndarray", bool]  # rule, offending rows, whether to show examples
_PARALLEL_ROWS = 100_000  # below this, threads cost more than they save


def _numeric(raw: pd.Series, col: ColumnSchema, checks: list[Check]) -> np.ndarray:
    import numpy as np
    import pandas as pd

    if pd.api.types.is_integer_dtype(raw) and raw.dtype.kind in "iu":
        values = raw.to_numpy()  # no gaps possible, and already whole numbers
        present = np.ones(len(values), dtype=bool)
    else:
        missing = raw.isna().to_numpy()
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
            values = raw.to_numpy(dtype="float64", na_value=np.nan)
        else:
            coerced = pd.to_numeric(raw, errors="coerce")
            values = coerced.to_numpy(dtype="float64", na_value=np.nan)
            checks.append(("not a number", np.isnan(values) & ~missing, True))
        present = ~np.isnan(values)
        if col.type == "integer":
            fraction = np.mod(values, 1, where=present, out=np.zeros_like(values))
            checks.append(("not an integer", present & (fraction != 0), True))
    with np.errstate(invalid="ignore"):
        if col.min is not None:
            checks.append((f"below min {col.min:g}", values < col.min, True))
        if col.max is not None:
            checks.append((f"above max {col.max:g}", values > col.max, True))
    if col.categories is not None:
        allowed = np.array([float(c) for c in col.categories])
        checks.append(("not an allowed value", present & ~np.isin(values, allowed), True))
    return values


def _text(raw: pd.Series, col: ColumnSchema, checks: list[Check], missing: np.ndarray) -> Any:
    import pandas as pd

    as_text = (
        raw
        if pd.api.types.is_object_dtype(raw) or pd.api.types.is_string_dtype(raw)
        else (raw.astype(str).where(~raw.isna()))
    )
    if col.type == "boolean":
        mapping = {"true": True, "false": False, "1": True, "0": False, "True": True,
                   "False": False, True: True, False: False}  # fmt: skip
        booleans = raw.map(mapping)
        checks.append(("not a boolean", booleans.isna().to_numpy() & ~missing, True))
        return booleans.astype("boolean")
    if col.categories is not None:
        allowed = [str(c) for c in col.categories]
        checks.append(("not an allowed value", ~as_text.isin(allowed).to_numpy() & ~missing, True))
    if col.regex is not None:
        matched = as_text.astype("string").str.fullmatch(col.regex).fillna(True)
        checks.append((f"does not match {col.regex!r}", ~matched.to_numpy(dtype=bool), True))
    return as_text


class _Column:
    """The checks of one column: its typed values, offending-row masks and missing counts."""

    def __init__(
        self,
        name: str,
        col: ColumnSchema,
        raw: pd.Series,
        policy: MissingPolicy | None,
        earlier: np.ndarray | None = None,
    ):

        self.name = name
        self.raw = raw
        self.checks: list[Check] = []
        missing = raw.isna().to_numpy()
        self.missing = int(missing.sum())
        self.rate = self.missing / len(raw) if len(raw) else 0.0
        self.values = (
            _numeric(raw, col, self.checks) if col.is_numeric else
            _text(raw, col, self.checks, missing)
        )  # fmt: skip
        self.hashes: np.ndarray | None = None
        if col.unique:
            repeated = raw.duplicated().to_numpy()
            if earlier is not None:  # values of earlier batches of the same table, hashed
                hashes = value_hashes(raw)
                repeated = repeated | _among(hashes, earlier)
                self.hashes = hashes[~missing]
            self.checks.append(("duplicate value", repeated & ~missing, True))
        self.failures = 0
        if missing.any():
            action = policy.action if policy else ("keep" if col.nullable else None)
            if action is None:
                self.checks.append(("missing value", missing, False))
            elif action == "fail":
                self.failures = int(missing.sum())
                self.checks.append(("missing value (policy: fail)", missing, False))
            elif action == "drop":
                self.checks.append(("missing value (policy: drop)", missing, False))


def value_hashes(values: pd.Series) -> np.ndarray:
    """A 64-bit hash of each value (equal values, equal hashes), to compare across batches."""
    import pandas as pd

    return pd.util.hash_pandas_object(values, index=False).to_numpy()


def _among(values: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """Which ``values`` occur in the sorted array ``ordered`` (binary search, no sort)."""
    import numpy as np

    at = np.searchsorted(ordered, values).clip(max=max(len(ordered) - 1, 0))
    return ordered[at] == values if len(ordered) else np.zeros(len(values), dtype=bool)


def _map(fn: Any, items: list[Any], rows: int) -> list[Any]:
    """``map``, on two threads for big tables: NumPy and Arrow release the GIL in their loops."""
    if rows < _PARALLEL_ROWS or len(items) < 2:
        return [fn(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        return list(pool.map(fn, items))


def _rows(values: Any, keep: np.ndarray) -> Any:
    """The kept rows of a column's values (a NumPy array or a Series, index left behind)."""
    import numpy as np

    if isinstance(values, np.ndarray):
        return values.take(keep)
    return values.array.take(keep)


class CheckedBatch:
    """One batch checked: accepted and quarantined rows, and what a report is built from."""

    def __init__(
        self,
        accepted: pd.DataFrame,
        quarantined: pd.DataFrame,
        found: _Findings,
        columns: list[_Column],
        absent: list[str],
        unknown: list[str],
    ) -> None:
        self.accepted = accepted
        self.quarantined = quarantined
        self.issues = found.issues
        self.checked = found.checked
        self.ranks = found.ranks
        self.missing = {c.name: c.missing for c in columns}
        self.failures = {c.name: c.failures for c in columns if c.failures}
        self.hashes = {c.name: c.hashes for c in columns if c.hashes is not None}
        self.absent = absent
        self.unknown = unknown
        self.rows = len(accepted) + len(quarantined)


def check_batch(
    frame: pd.DataFrame,
    schema: TableSchema,
    policies: Mapping[str, MissingPolicy],
    label_classes: Sequence[Scalar] | None = None,
    *,
    offset: int = 0,
    earlier: Mapping[str, np.ndarray] | None = None,
) -> CheckedBatch:
    """Check rows ``offset ..`` of a table (see :func:`validate_table`).

    ``earlier``: for each ``unique`` column, hashes of its values in the table's earlier
    batches, so a value repeated across batches is a duplicate as in one whole table.
    """
    import numpy as np
    import pandas as pd

    policies = dict(policies)
    n = len(frame)
    found = _Findings(n)
    absent = [name for name in schema.columns if name not in frame.columns]
    unknown = [str(c) for c in frame.columns if c not in schema.columns]
    for name in absent:
        found.add(name, "column is missing from the table", np.ones(n, dtype=bool), None)
    present = [(name, col) for name, col in schema.columns.items() if name not in absent]
    # Dearest first, so the threads finish together: regexes, then uniqueness, then text.
    present.sort(key=lambda item: (item[1].regex is None, not item[1].unique, item[1].is_numeric))
    label = schema.label if label_classes is not None else None
    if label is not None and label not in policies:
        policies[label] = MissingPolicy(action="keep")  # a missing label is reported below
    seen = earlier or {}
    checked: list[_Column] = _map(
        lambda item: _Column(
            item[0], item[1], frame[item[0]], policies.get(item[0]), seen.get(item[0])
        ),
        present,
        n,
    )
    order = {name: i for i, name in enumerate(schema.columns)}
    columns = sorted(checked, key=lambda c: order[c.name])
    for column in columns:
        for check, mask, show in column.checks:
            if column.name == label and check == "not an allowed value":
                continue  # the stray-label reasons below name the value and the classes
            found.add(column.name, check, mask, column.raw if show else None)
        if column.name == label and label_classes is not None:
            for reason, mask, rank in stray_labels(column.raw, label_classes):
                found.add(column.name, reason, mask, None, rank)
    typed = pd.DataFrame({c.name: c.values for c in columns}, index=frame.index, copy=False)
    for rule in schema.rules:
        if rule.columns() <= set(typed.columns):
            found.add(f"rule {rule.name}", rule.expr, rule_violations(rule, typed), None)
    keep = np.flatnonzero(~found.bad) if not absent else np.zeros(0, dtype=np.int64)
    if len(keep) == n:
        accepted = typed.reset_index(drop=True)
    else:
        taken = _map(lambda c: _rows(c.values, keep), columns, n)
        accepted = pd.DataFrame(
            {c.name: v for c, v in zip(columns, taken, strict=True)}, copy=False
        )
    accepted.insert(0, ROW_COLUMN, keep + offset)
    quarantined = frame[found.bad].copy()
    quarantined.insert(0, ROW_COLUMN, np.flatnonzero(found.bad) + offset)
    quarantined[REASONS_COLUMN] = found.reasons()
    return CheckedBatch(
        accepted, quarantined.reset_index(drop=True), found, columns, absent, unknown
    )


def whole_integers(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """``frame`` with each integer column that holds no missing value as int64 (not float)."""
    for name, col in schema.columns.items():
        if (
            col.type == "integer"
            and name in frame
            and frame[name].dtype.kind == "f"
            and (not frame[name].isna().any())
        ):
            frame[name] = frame[name].astype("int64")
    return frame


def check_policies(
    schema: TableSchema, missing: Mapping[str, MissingPolicy] | None
) -> dict[str, MissingPolicy]:
    """The missing-value policies, after checking that each names a schema column."""
    policies = dict(missing or {})
    unknown_policy = sorted(set(policies) - set(schema.columns))
    if unknown_policy:
        from mlwarden.errors import DataError

        raise DataError(f"missing-value policies name unknown column(s) {unknown_policy}")
    return policies


def validate_table(
    frame: pd.DataFrame,
    schema: TableSchema,
    missing: Mapping[str, MissingPolicy] | None = None,
    *,
    row_ids: bool = False,
    label_classes: Sequence[Scalar] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, ValidationReport]:
    """Split ``frame`` into rows that satisfy ``schema`` and quarantined rows with reasons.

    Returns the accepted rows (coerced to the schema's types, in schema column order), the
    quarantined rows as given plus ``_row`` (position in ``frame``) and ``_reasons``, and a
    report with per-column counts and examples. A column the schema requires but the table
    lacks quarantines every row, so nothing is silently accepted. With ``row_ids`` the accepted
    rows carry ``_row`` too, so later steps can say which input rows they dropped. With
    ``label_classes`` (see ``decide_classes``), rows whose label is missing or not one of them
    are quarantined with a reason naming the value and the classes.
    """
    batch = check_batch(frame, schema, check_policies(schema, missing), label_classes)
    accepted = whole_integers(batch.accepted, schema)
    if not row_ids:
        accepted = accepted.drop(columns=[ROW_COLUMN])
    n = len(frame)
    report = ValidationReport(
        rows_in=n,
        rows_accepted=len(accepted),
        rows_rejected=len(batch.quarantined),
        unknown_columns=batch.unknown,
        missing_columns=batch.absent,
        issues=batch.issues,
        missing_rates={c: (m / n if n else 0.0) for c, m in batch.missing.items()},
        missing_failures=batch.failures,
    )
    return accepted, batch.quarantined, report


def coerce_numeric(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """A copy of ``frame`` whose numeric schema columns hold numbers; non-numbers become missing.

    For a drift reference: its distribution is compared, not its rows judged, so a stray
    ``'n/a'`` in a numeric column counts as missing instead of stopping the comparison.
    """
    import pandas as pd

    typed = frame.copy()
    for name, col in schema.columns.items():
        if col.is_numeric and name in typed and not pd.api.types.is_numeric_dtype(typed[name]):
            typed[name] = pd.to_numeric(typed[name], errors="coerce")
    return typed


def typed_classes(classes: LabelClasses, column: ColumnSchema, labels: pd.Series) -> LabelClasses:
    """``classes`` with the classes and positive as validation will type the label column.

    A label read as text but typed ``integer`` by the schema (or read as numbers but typed
    ``category``) reaches training with other values than the raw table holds; the model's
    classes, and so the positive class the metrics look for, are those typed values.
    """
    single = TableSchema(columns={classes.column: column}, label=classes.column)
    typed = validate_table(labels.to_frame(classes.column), single)[0][classes.column]
    by_key = {label_key(v): v for v in typed.unique()}

    def retype(value: Scalar) -> Scalar:
        return _plain(by_key[label_key(value)]) if label_key(value) in by_key else value

    return classes.model_copy(
        update={
            "classes": [retype(c) for c in classes.classes],
            "positive": retype(classes.positive) if classes.positive is not None else None,
        }
    )
