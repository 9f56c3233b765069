"""The reference side of a drift report, computed once for many batches.

A live monitor compares each new window with the same reference table: :class:`DriftReference`
keeps what :func:`~mlwarden.data.drift_report` would recompute on every call (each column's
non-missing values, its kind and thresholds, the quantile bins and their reference counts, the
reference categories as text) and answers :meth:`DriftReference.compare` with the report
``drift_report(reference, current, ...)`` gives, through the same statistics, errors included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlwarden.data._drift import (
    PSI_EPSILON,
    ColumnDrift,
    DriftKind,
    DriftReport,
    DriftThresholds,
    _above,
    _as_text,
    _below,
    _bin_counts,
    _category_counts,
    _check_names,
    _chi2_from_counts,
    _column_kind,
    _js_from_counts,
    _ks_from_values,
    _Limits,
    _limits,
    _nonempty,
    _numeric_bins,
    _numeric_values,
    _psi_from_counts,
    drift_of_columns,
)
from mlwarden.errors import DataError, ParameterError

if TYPE_CHECKING:
    import pandas as pd

    from mlwarden.data._schema import TableSchema

__all__ = ["DriftReference"]


@dataclass
class _Column:
    """One reference column, prepared; an error the report would raise for it is kept and
    raised at the point of the comparison where ``drift_report`` raises it."""

    name: str
    kind: DriftKind
    limits: _Limits
    rows: int
    values: pd.Series | None = None
    missing: DataError | None = None  # no non-missing reference value
    numbers: Any = None  # numeric: the values as float64
    not_numeric: DataError | None = None
    to_bin: Any = None
    n_bins: int = 0
    counts: Any = None  # numeric: reference counts per bin
    text: Any = None  # categorical: the values as text


class DriftReference:
    """A reference table prepared for :meth:`compare`: ``drift_report`` against many batches.

    Parameters
    ----------
    reference : DataFrame
        The reference rows (e.g. a sample of the training table).
    thresholds, columns, categorical, schema, bins
        As in :func:`~mlwarden.data.drift_report`.
    """

    def __init__(
        self,
        reference: pd.DataFrame,
        thresholds: DriftThresholds | None = None,
        columns: list[str] | None = None,
        categorical: list[str] | None = None,
        schema: TableSchema | None = None,
        *,
        bins: int = 10,
    ) -> None:
        if bins < 2:
            raise ParameterError(f"bins must be at least 2, got {bins}")
        self.thresholds = thresholds or DriftThresholds()
        self.names = [str(c) for c in reference.columns] if columns is None else list(columns)
        self._forced = set(categorical or [])
        self._empty = reference.iloc[:0]  # what the name checks read of the reference
        _check_names(self._empty, self._empty, self.names, self._forced, self.thresholds)
        self._columns = [
            self._prepare(
                name,
                reference[name],
                _column_kind(name, reference[name], self._forced, schema),
                _limits(self.thresholds, name),
                bins,
            )
            for name in self.names
        ]

    @staticmethod
    def _prepare(
        name: str, series: pd.Series, kind: DriftKind, limits: _Limits, bins: int
    ) -> _Column:
        column = _Column(name, kind, limits, len(series))
        try:
            column.values = _nonempty(series, f"column {name!r} of the reference")
        except DataError as exc:
            column.missing = exc
            return column
        if kind == "categorical":
            column.text = _as_text(column.values)
            return column
        try:
            column.numbers = _numeric_values(column.values, f"column {name!r} of the reference")
        except DataError as exc:
            column.not_numeric = exc
            return column
        column.to_bin, column.n_bins = _numeric_bins(column.numbers, bins)
        column.counts = _bin_counts(column.to_bin(column.numbers), column.n_bins)
        return column

    def compare(self, current: pd.DataFrame) -> DriftReport:
        """``drift_report(reference, current, ...)`` with the reference side computed already.

        Raises
        ------
        DataError
            As ``drift_report`` does: a column absent from ``current``, or with no
            non-missing value on either side.
        """
        _check_names(self._empty, current, self.names, self._forced, self.thresholds)
        return drift_of_columns([self._drift(c, current[c.name]) for c in self._columns],
                                self.thresholds)  # fmt: skip

    @staticmethod
    def _drift(column: _Column, current: pd.Series) -> ColumnDrift:
        """As ``_column_drift``: the same statistics, in the same order, the same errors."""
        if column.missing is not None:
            raise column.missing
        name, limits = column.name, column.limits
        cur = _nonempty(current, f"column {name!r} of the current batch")
        stats: dict[str, object]
        if column.kind == "numeric":
            if column.not_numeric is not None:
                raise column.not_numeric
            values = _numeric_values(cur, f"column {name!r} of the current batch")
            counts = _bin_counts(column.to_bin(values), column.n_bins)
            psi = _psi_from_counts(column.counts, counts, epsilon=PSI_EPSILON)
            ks = _ks_from_values(column.numbers, values)
            reasons = [
                *_above("psi", psi, limits.psi),
                *_below("ks p-value", ks.pvalue, limits.ks_pvalue),
            ]
            stats = {
                "psi": psi,
                "ks_statistic": ks.statistic,
                "ks_pvalue": ks.pvalue,
                "reasons": reasons,
            }
        else:
            assert column.values is not None
            both = _category_counts(column.values, cur, column.text)
            psi = _psi_from_counts(*both, epsilon=PSI_EPSILON)
            chi2 = _chi2_from_counts(*both)
            js = _js_from_counts(*both)
            stats = {
                "psi": psi,
                "chi2_statistic": chi2.statistic,
                "chi2_pvalue": chi2.pvalue,
                "js_distance": js,
                "reasons": [
                    *_above("psi", psi, limits.psi),
                    *_below("chi2 p-value", chi2.pvalue, limits.chi2_pvalue),
                    *_above("js distance", js, limits.js_distance),
                ],
            }
        assert column.values is not None
        return ColumnDrift.model_validate(
            {
                "column": name,
                "kind": column.kind,
                "n_reference": len(column.values),
                "n_current": len(cur),
                "missing_reference": 1.0 - len(column.values) / column.rows,
                "missing_current": 1.0 - len(cur) / len(current),
                "drifted": bool(stats["reasons"]),
                **stats,
            }
        )
