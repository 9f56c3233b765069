"""Per-column drift between a reference table and a new batch: PSI, KS, chi-square and JS.

Every statistic is a pure function of two samples, so the same code can back a data-quality gate
in a pipeline and a live drift monitor in a model server. Missing values are dropped before any
statistic is computed; their rate on each side is reported instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from mlwarden.errors import DataError, ParameterError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from mlwarden.data._schema import TableSchema

    Sample: TypeAlias = pd.Series | npt.ArrayLike
    Counts: TypeAlias = npt.NDArray[np.int64]

__all__ = [
    "PSI_EPSILON",
    "ColumnDrift",
    "ColumnThresholds",
    "DriftKind",
    "DriftReport",
    "DriftThresholds",
    "TwoSampleTest",
    "chi2_test",
    "drift_report",
    "jensen_shannon_distance",
    "ks_test",
    "population_stability_index",
]

DriftKind = Literal["numeric", "categorical"]

#: Proportion that replaces an empty bin or category so ``ln(a / e)`` is defined. 1e-4 is the
#: usual credit-risk choice: an unseen category holding 1% of one side adds about 0.045 to PSI.
PSI_EPSILON = 1e-4

_NUMERIC_SCHEMA_TYPES = frozenset({"integer", "float"})


class TwoSampleTest(NamedTuple):
    """Statistic and p-value of a two-sample test."""

    statistic: float
    pvalue: float


# --------------------------------------------------------------------------------------------
# Thresholds and results
# --------------------------------------------------------------------------------------------


class ColumnThresholds(BaseModel):
    """Per-column overrides of the drift thresholds; ``None`` keeps the table-wide default."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    psi: float | None = Field(default=None, ge=0.0)
    ks_pvalue: float | None = Field(default=None, ge=0.0, le=1.0)
    chi2_pvalue: float | None = Field(default=None, ge=0.0, le=1.0)
    js_distance: float | None = Field(default=None, ge=0.0, le=1.0)


@dataclass(frozen=True)
class _Limits:
    """The four thresholds that apply to one column, overrides resolved."""

    psi: float
    ks_pvalue: float
    chi2_pvalue: float
    js_distance: float


class DriftThresholds(BaseModel):
    """When a column, and the whole batch, counts as drifted.

    A numeric column drifts when PSI > ``psi`` or the KS p-value < ``ks_pvalue``; a categorical
    one when PSI > ``psi``, the chi-square p-value < ``chi2_pvalue`` or the JS distance >
    ``js_distance``. PSI and JS measure how *large* the shift is, the tests how *significant*:
    with large samples a test flags shifts too small to matter, so set ``ks_pvalue`` (or
    ``chi2_pvalue``) to 0 to rely on the size measures alone. The batch drifts when the share of
    drifted columns exceeds ``max_drifted_share`` (0.0: any drifted column fails it).
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)

    psi: float = Field(default=0.2, ge=0.0)
    ks_pvalue: float = Field(default=0.01, ge=0.0, le=1.0)
    chi2_pvalue: float = Field(default=0.01, ge=0.0, le=1.0)
    js_distance: float = Field(default=0.1, ge=0.0, le=1.0)
    max_drifted_share: float = Field(default=0.0, ge=0.0, le=1.0)
    columns: dict[str, ColumnThresholds] = Field(default_factory=dict)


class ColumnDrift(BaseModel):
    """Drift statistics of one column; ``n_*`` count the non-missing values compared."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    column: str
    kind: DriftKind
    n_reference: int
    n_current: int
    missing_reference: float
    missing_current: float
    psi: float
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    chi2_statistic: float | None = None
    chi2_pvalue: float | None = None
    js_distance: float | None = None
    drifted: bool
    reasons: list[str]


class DriftReport(BaseModel):
    """Per-column drift and the overall verdict under ``thresholds``."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    columns: list[ColumnDrift]
    drifted_columns: list[str]
    drifted_share: float
    drifted: bool
    thresholds: DriftThresholds


# --------------------------------------------------------------------------------------------
# Samples and counts
# --------------------------------------------------------------------------------------------


def _as_series(values: Sample) -> pd.Series:
    """Wrap array-likes in a Series so missing values and dtypes are handled one way."""
    import pandas as pd

    return values if isinstance(values, pd.Series) else pd.Series(values)


def _infer_kind(series: pd.Series) -> DriftKind:
    """Numeric for int/float dtypes; categorical for bool, object, string and category."""
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return "numeric"
    if (
        pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    ):
        return "categorical"
    raise DataError(f"dtype {dtype} is neither numeric nor categorical; drift cannot compare it")


def _numeric_values(series: pd.Series, what: str) -> npt.NDArray[np.float64]:
    """The non-missing values as float64, or a DataError naming ``what`` if not numeric."""
    import numpy as np
    import pandas as pd

    try:
        numbers = pd.to_numeric(series.dropna())
        return np.asarray(numbers, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} is compared as numeric but holds non-numeric values") from exc


def _nonempty(series: pd.Series, what: str) -> pd.Series:
    """The non-missing values, or a DataError naming ``what`` when there are none."""
    values = series.dropna()
    if values.empty:
        raise DataError(f"{what} has no non-missing values to compare")
    return values


def _numeric_counts(
    reference: npt.NDArray[np.float64], current: npt.NDArray[np.float64], bins: int
) -> tuple[Counts, Counts]:
    """Counts per bin, with edges at the reference's quantiles (see :func:`_numeric_bins`)."""
    to_bin, n_bins = _numeric_bins(reference, bins)
    return _bin_counts(to_bin(reference), n_bins), _bin_counts(to_bin(current), n_bins)


def _numeric_bins(
    reference: npt.NDArray[np.float64], bins: int
) -> tuple[Callable[[npt.NDArray[np.float64]], npt.NDArray[Any]], int]:
    """What bin each value falls in, and how many bins, from the reference's quantiles.

    Bins are right-closed, ``(e[i-1], e[i]]``, and the outer two are open-ended, so current values
    beyond the reference range land in them. Edges are actual reference values (inverted-CDF
    quantiles), deduplicated, so heavy ties (e.g. zero-inflated columns) merge bins. A constant
    reference gets three bins: below, at and above its value.
    """
    import numpy as np

    finite = reference[np.isfinite(reference)]
    if finite.size and finite.min() == finite.max():
        level = finite[0]
        return (lambda values: np.sign(values - level) + 1), 3
    edges = np.empty(0)
    if finite.size:
        levels = np.linspace(0.0, 1.0, bins + 1)[1:-1]
        edges = np.unique(np.quantile(finite, levels, method="inverted_cdf"))
    return (lambda values: np.searchsorted(edges, values, side="left")), edges.size + 1


def _bin_counts(positions: npt.NDArray[Any], n_bins: int) -> Counts:
    import numpy as np

    return np.bincount(positions.astype(np.int64), minlength=n_bins)


def _as_text(values: pd.Series) -> npt.NDArray[np.object_]:
    """Categories compared by their text, so ``True`` read from a CSV matches ``"True"`` and
    ``1.0`` matches ``1``: tables from different sources type the same value differently."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return np.array([f"{v:g}" for v in values.to_numpy(dtype=float)], dtype=object)
    return values.astype(str).to_numpy(dtype=object)


def _category_counts(
    reference: pd.Series,
    current: pd.Series,
    reference_text: npt.NDArray[np.object_] | None = None,
) -> tuple[Counts, Counts]:
    """Counts per category over the union of both sides' categories (absent ones count 0);
    ``reference_text``: ``_as_text(reference)`` when computed already."""
    import numpy as np
    import pandas as pd

    if reference_text is None:
        reference_text = _as_text(reference)
    both = np.concatenate([reference_text, _as_text(current)], dtype=object)
    codes, uniques = pd.factorize(both)
    split = len(reference)
    return (
        np.bincount(codes[:split], minlength=len(uniques)),
        np.bincount(codes[split:], minlength=len(uniques)),
    )


# --------------------------------------------------------------------------------------------
# Statistics on counts
# --------------------------------------------------------------------------------------------


def _psi_from_counts(reference: Counts, current: Counts, epsilon: float) -> float:
    """PSI = sum((a - e) * ln(a / e)) over bins; each term is >= 0, so the sum is too."""
    import numpy as np

    expected = reference / reference.sum()
    actual = current / current.sum()
    expected = np.where(expected == 0, epsilon, expected)
    actual = np.where(actual == 0, epsilon, actual)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _chi2_from_counts(reference: Counts, current: Counts) -> TwoSampleTest:
    """Chi-square homogeneity test on the 2 x k table; one category left means no difference."""
    import numpy as np
    from scipy.stats import chi2_contingency

    table = np.vstack([reference, current])
    if table.shape[1] < 2:
        return TwoSampleTest(statistic=0.0, pvalue=1.0)
    result = chi2_contingency(table)
    return TwoSampleTest(statistic=float(result.statistic), pvalue=float(result.pvalue))


def _ks_from_values(
    reference: npt.NDArray[np.float64], current: npt.NDArray[np.float64]
) -> TwoSampleTest:
    """KS statistic (largest gap between the two empirical CDFs) and its p-value.

    ``scipy.stats.ks_2samp`` itself, without its axis and NaN-policy wrapper (about half its
    time on a few thousand values): the samples here are flat and hold no NaN, which is all
    the wrapper would deal with, so the statistic and p-value are the same.
    """
    result = _ks_2samp()(reference, current)
    return TwoSampleTest(statistic=float(result.statistic), pvalue=float(result.pvalue))


@lru_cache(maxsize=1)
def _ks_2samp() -> Callable[..., Any]:
    import inspect

    from scipy.stats import ks_2samp

    unwrapped: Callable[..., Any] = inspect.unwrap(ks_2samp)
    return unwrapped


def _js_from_counts(reference: Counts, current: Counts) -> float:
    """JS distance in bits; rounding can make the divergence a hair below 0, read as 0."""
    import numpy as np
    from scipy.spatial.distance import jensenshannon

    with np.errstate(invalid="ignore"):
        distance = float(jensenshannon(reference, current, base=2))
    return 0.0 if np.isnan(distance) else min(max(distance, 0.0), 1.0)


# --------------------------------------------------------------------------------------------
# Public statistics on samples
# --------------------------------------------------------------------------------------------


def population_stability_index(
    reference: Sample,
    current: Sample,
    bins: int = 10,
    *,
    kind: DriftKind | None = None,
    epsilon: float = PSI_EPSILON,
) -> float:
    """Population stability index of ``current`` against ``reference`` (Yurdakul 2018).

    ``sum((a - e) * ln(a / e))`` over bins, ``e`` and ``a`` the reference and current
    proportions. Numeric samples use ``bins`` reference-quantile bins; categorical ones the union
    of categories. Empty proportions become ``epsilon``. Common credit-risk reading: < 0.1 stable,
    0.1-0.25 some shift, > 0.25 major shift. ``kind`` defaults to what the dtype suggests.
    """
    if bins < 2:
        raise ParameterError(f"bins must be at least 2, got {bins}")
    if not 0.0 < epsilon < 1.0:
        raise ParameterError(f"epsilon must lie strictly between 0 and 1, got {epsilon}")
    ref, cur = _samples(reference, current)
    if (kind or _infer_kind(ref)) == "numeric":
        ref_values, cur_values = _numeric_samples(ref, cur)
        return _psi_from_counts(*_numeric_counts(ref_values, cur_values, bins), epsilon=epsilon)
    return _psi_from_counts(*_category_counts(ref, cur), epsilon=epsilon)


def ks_test(reference: Sample, current: Sample) -> TwoSampleTest:
    """Two-sample Kolmogorov-Smirnov test of numeric samples (``scipy.stats.ks_2samp``)."""
    return _ks_from_values(*_numeric_samples(*_samples(reference, current)))


def chi2_test(reference: Sample, current: Sample) -> TwoSampleTest:
    """Chi-square test that two categorical samples share one distribution (2 x k table)."""
    return _chi2_from_counts(*_category_counts(*_samples(reference, current)))


def jensen_shannon_distance(reference: Sample, current: Sample) -> float:
    """Jensen-Shannon distance (Lin 1991) between category distributions, base 2, in [0, 1]."""
    return _js_from_counts(*_category_counts(*_samples(reference, current)))


def _samples(reference: Sample, current: Sample) -> tuple[pd.Series, pd.Series]:
    """Both samples as Series without missing values; DataError if either is left empty."""
    return (
        _nonempty(_as_series(reference), "the reference sample"),
        _nonempty(_as_series(current), "the current sample"),
    )


def _numeric_samples(
    reference: pd.Series, current: pd.Series
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Both samples as float64 arrays; DataError if either is not numeric."""
    return (
        _numeric_values(reference, "the reference sample"),
        _numeric_values(current, "the current sample"),
    )


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def _numeric_drift(
    name: str, ref: pd.Series, cur: pd.Series, limits: _Limits, bins: int
) -> dict[str, object]:
    """PSI and KS of a numeric column, and the reasons it drifted."""
    ref_values = _numeric_values(ref, f"column {name!r} of the reference")
    cur_values = _numeric_values(cur, f"column {name!r} of the current batch")
    psi = _psi_from_counts(*_numeric_counts(ref_values, cur_values, bins), epsilon=PSI_EPSILON)
    ks = _ks_from_values(ref_values, cur_values)
    reasons = [
        *_above("psi", psi, limits.psi),
        *_below("ks p-value", ks.pvalue, limits.ks_pvalue),
    ]
    return {"psi": psi, "ks_statistic": ks.statistic, "ks_pvalue": ks.pvalue, "reasons": reasons}


def _categorical_drift(ref: pd.Series, cur: pd.Series, limits: _Limits) -> dict[str, object]:
    """PSI, chi-square and JS of a categorical column, and the reasons it drifted."""
    counts = _category_counts(ref, cur)
    psi = _psi_from_counts(*counts, epsilon=PSI_EPSILON)
    chi2 = _chi2_from_counts(*counts)
    js = _js_from_counts(*counts)
    reasons = [
        *_above("psi", psi, limits.psi),
        *_below("chi2 p-value", chi2.pvalue, limits.chi2_pvalue),
        *_above("js distance", js, limits.js_distance),
    ]
    return {
        "psi": psi,
        "chi2_statistic": chi2.statistic,
        "chi2_pvalue": chi2.pvalue,
        "js_distance": js,
        "reasons": reasons,
    }


def _above(what: str, value: float, limit: float) -> list[str]:
    """``["psi 0.31 > 0.2"]`` when a size measure exceeds its threshold, else ``[]``."""
    return [f"{what} {value:.3g} > {limit:g}"] if value > limit else []


def _below(what: str, pvalue: float, limit: float) -> list[str]:
    """``["ks p-value 0.001 < 0.01"]`` when a test is significant at ``limit``, else ``[]``."""
    return [f"{what} {pvalue:.3g} < {limit:g}"] if pvalue < limit else []


def _column_drift(
    name: str, reference: pd.Series, current: pd.Series, kind: DriftKind, limits: _Limits, bins: int
) -> ColumnDrift:
    """Drift of one column, missing values dropped and their rates reported."""
    ref = _nonempty(reference, f"column {name!r} of the reference")
    cur = _nonempty(current, f"column {name!r} of the current batch")
    if kind == "numeric":
        stats = _numeric_drift(name, ref, cur, limits, bins)
    else:
        stats = _categorical_drift(ref, cur, limits)
    return ColumnDrift.model_validate(
        {
            "column": name,
            "kind": kind,
            "n_reference": len(ref),
            "n_current": len(cur),
            "missing_reference": 1.0 - len(ref) / len(reference),
            "missing_current": 1.0 - len(cur) / len(current),
            "drifted": bool(stats["reasons"]),
            **stats,
        }
    )


def _limits(thresholds: DriftThresholds, column: str) -> _Limits:
    """The thresholds for ``column``: its override where set, else the table-wide default."""
    override = thresholds.columns.get(column, ColumnThresholds())
    return _Limits(
        psi=thresholds.psi if override.psi is None else override.psi,
        ks_pvalue=thresholds.ks_pvalue if override.ks_pvalue is None else override.ks_pvalue,
        chi2_pvalue=(
            thresholds.chi2_pvalue if override.chi2_pvalue is None else override.chi2_pvalue
        ),
        js_distance=(
            thresholds.js_distance if override.js_distance is None else override.js_distance
        ),
    )


def _column_kind(
    name: str, series: pd.Series, categorical: set[str], schema: TableSchema | None
) -> DriftKind:
    """``categorical`` first, then the schema's type, then the dtype."""
    if name in categorical:
        return "categorical"
    if schema is not None and name in schema.columns:
        return "numeric" if schema.columns[name].type in _NUMERIC_SCHEMA_TYPES else "categorical"
    try:
        return _infer_kind(series)
    except DataError as exc:
        raise DataError(f"column {name!r}: {exc}") from None


def _check_names(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    categorical: set[str],
    thresholds: DriftThresholds,
) -> None:
    """Every named column must exist: a typo must not silently skip a check."""
    if not columns:
        raise DataError("no columns to compare for drift")
    for what, names in (
        ("requested", columns),
        ("listed as categorical", sorted(categorical)),
        ("given threshold overrides", sorted(thresholds.columns)),
    ):
        unknown = [n for n in names if n not in reference.columns]
        if unknown:
            raise DataError(f"column(s) {unknown} {what} are not in the reference table")
    absent = [n for n in columns if n not in current.columns]
    if absent:
        raise DataError(
            f"the current batch lacks column(s) {absent} that the reference has; "
            f"it has {list(current.columns)}"
        )


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    thresholds: DriftThresholds | None = None,
    columns: list[str] | None = None,
    categorical: list[str] | None = None,
    schema: TableSchema | None = None,
    *,
    bins: int = 10,
) -> DriftReport:
    """Compare each column of ``current`` with ``reference`` and say whether the batch drifted.

    ``columns`` defaults to every reference column. A column is categorical when listed in
    ``categorical``, else when ``schema`` types it category/string/boolean, else when its dtype
    is bool, object, string or category; integer and float columns are numeric. A column absent
    from ``current``, or with no non-missing value on either side, raises ``DataError``.
    """
    if bins < 2:
        raise ParameterError(f"bins must be at least 2, got {bins}")
    thresholds = thresholds or DriftThresholds()
    names = [str(c) for c in reference.columns] if columns is None else list(columns)
    forced = set(categorical or [])
    _check_names(reference, current, names, forced, thresholds)
    results = [
        _column_drift(
            name,
            reference[name],
            current[name],
            _column_kind(name, reference[name], forced, schema),
            _limits(thresholds, name),
            bins,
        )
        for name in names
    ]
    return drift_of_columns(results, thresholds)


def drift_of_columns(columns: list[ColumnDrift], thresholds: DriftThresholds) -> DriftReport:
    """The batch's verdict from its columns' drift (each column is compared on its own)."""
    drifted = [r.column for r in columns if r.drifted]
    share = len(drifted) / len(columns)
    return DriftReport(
        columns=columns,
        drifted_columns=drifted,
        drifted_share=share,
        drifted=share > thresholds.max_drifted_share,
        thresholds=thresholds,
    )
