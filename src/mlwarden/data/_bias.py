"""Label balance, per-group statistics and per-group model rates with fairness differences.

Pure functions on labels, tables and predictions, each returning a pydantic result. The group
measures are the usual group-fairness criteria compared across the values of one protected
attribute: demographic parity (equal selection rates), equal opportunity (equal true-positive
rates, Hardt, Price and Srebro, NeurIPS 2016) and the disparate-impact ratio behind the
"four-fifths" (80%) rule (Feldman et al., KDD 2015).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from mlwarden.errors import DataError, UnknownNameError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MISSING_GROUP = "(missing)"
"""Name of the group of rows whose protected attribute is missing."""

FOUR_FIFTHS = 0.8
"""The "80% rule": a disparate-impact ratio below this is commonly read as adverse impact."""

FairnessMeasure = Literal["demographic_parity", "disparate_impact", "equal_opportunity"]


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python scalar it holds (so results serialise); others unchanged."""
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


def _sorted_labels(values: Any) -> list[Any]:
    """Distinct labels, sorted by their text so mixed types still sort."""
    return sorted({_plain(v) for v in values}, key=str)


# --------------------------------------------------------------------------------------------
# Label balance


class ClassShare(BaseModel):
    """How many labels, and which share of the non-missing labels, one class has."""

    model_config = ConfigDict(defer_build=True)

    label: Any
    count: int
    share: float


class LabelBalance(BaseModel):
    """Class counts and shares, majority first, and the majority/minority imbalance ratio.

    ``imbalance_ratio`` is the majority count over the minority count (1.0 when balanced);
    it is None when there is a single class, since there is nothing to compare.
    """

    model_config = ConfigDict(defer_build=True)

    n: int
    n_missing: int
    classes: list[ClassShare]
    majority: Any
    minority: Any
    imbalance_ratio: float | None


def label_balance(y: Any) -> LabelBalance:
    """Count and share of each class in ``y``, and how imbalanced the classes are.

    A strongly imbalanced label makes accuracy misleading and leaves the minority class with few
    examples to learn from; it is the first thing to know before reading any other score.
    Missing labels are counted in ``n_missing`` and left out of the shares.

    Raises
    ------
    DataError
        If ``y`` holds no non-missing label.
    """
    import pandas as pd

    labels = pd.Series(y)
    counts = labels.value_counts(dropna=True)
    n_missing = int(labels.isna().sum())
    if counts.empty:
        raise DataError(
            f"label_balance needs at least one non-missing label; got {len(labels)} values, "
            f"{n_missing} of them missing"
        )
    total = int(counts.sum())
    order = sorted(counts.items(), key=lambda item: (-int(item[1]), str(item[0])))
    classes = [
        ClassShare(label=_plain(label), count=int(count), share=int(count) / total)
        for label, count in order
    ]
    major, minor = classes[0], classes[-1]
    return LabelBalance(
        n=len(labels),
        n_missing=n_missing,
        classes=classes,
        majority=major.label,
        minority=minor.label,
        imbalance_ratio=major.count / minor.count if len(classes) > 1 else None,
    )


# --------------------------------------------------------------------------------------------
# Group statistics on a labelled table


class GroupStats(BaseModel):
    """Size, share of rows and base rate of one group of one protected attribute.

    ``base_rate`` is the share of the group's labelled rows that carry the positive label; it is
    None when no row of the group is labelled.
    """

    model_config = ConfigDict(defer_build=True)

    attribute: str
    group: str
    size: int
    share: float
    n_positive: int
    base_rate: float | None


def group_keys(values: pd.Series) -> np.ndarray:
    """Group names of a protected attribute: each value as text, missing ones as "(missing)"."""
    import numpy as np

    missing = values.isna().to_numpy()
    text = values.astype(object).to_numpy()
    return np.array(
        [MISSING_GROUP if gone else str(v) for v, gone in zip(text, missing, strict=True)],
        dtype=object,
    )


def _ordered_groups(keys: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Each distinct group with its row mask, largest first, then by name."""
    import numpy as np

    names, counts = np.unique(keys.astype(str), return_counts=True)
    order = sorted(zip(names.tolist(), counts.tolist(), strict=True), key=lambda t: (-t[1], t[0]))
    return [(str(name), keys == name) for name, _ in order]


def _require_columns(frame: pd.DataFrame, wanted: list[str], role: str) -> None:
    absent = [c for c in wanted if c not in frame.columns]
    if absent:
        raise DataError(
            f"{role} column(s) {absent} not in the frame; its columns are {list(frame.columns)}"
        )


def _require_positive(labels: Any, positive: Any, where: str) -> None:
    import pandas as pd

    present = _sorted_labels(pd.Series(labels, dtype=object).dropna())
    if _plain(positive) not in present:
        raise DataError(f"positive class {positive!r} is not among the {where}: {present}")


def group_stats(
    frame: pd.DataFrame, label: str, protected: list[str], positive: Any
) -> list[GroupStats]:
    """Size, share of rows and positive base rate of every group of each protected attribute.

    Different base rates across groups are a property of the data, not of a model: they bound
    what demographic parity can ask of an accurate model, and a model trained on them tends to
    reproduce them. Missing attribute values form their own group, "(missing)".

    Raises
    ------
    DataError
        If ``label`` or a protected column is not in ``frame``, or ``positive`` is not among the
        labels.
    """
    _require_columns(frame, [label], "label")
    _require_columns(frame, protected, "protected")
    _require_positive(frame[label], positive, f"labels of column {label!r}")
    labels = frame[label]
    labelled = labels.notna().to_numpy()
    is_positive = labels.eq(positive).fillna(False).to_numpy(dtype=bool)
    stats: list[GroupStats] = []
    for attribute in protected:
        for group, mask in _ordered_groups(group_keys(frame[attribute])):
            n_labelled = int((mask & labelled).sum())
            n_positive = int((mask & is_positive).sum())
            stats.append(
                GroupStats(
                    attribute=attribute,
                    group=group,
                    size=int(mask.sum()),
                    share=float(mask.mean()),
                    n_positive=n_positive,
                    base_rate=n_positive / n_labelled if n_labelled else None,
                )
            )
    return stats


# --------------------------------------------------------------------------------------------
# Per-group model rates and the fairness differences


class GroupMetrics(BaseModel):
    """A model's decisions on one group: selection rate, TPR and FPR.

    ``tpr`` is None when the group has no actual positives and ``fpr`` when it has no actual
    negatives: the rate is undefined, not zero.
    """

    model_config = ConfigDict(defer_build=True)

    group: str
    n: int
    n_actual_positive: int
    n_actual_negative: int
    n_selected: int
    selection_rate: float
    tpr: float | None
    fpr: float | None
    compared: bool


class Exclusion(BaseModel):
    """A group left out of some fairness measures, and why."""

    model_config = ConfigDict(defer_build=True)

    group: str
    measures: list[FairnessMeasure]
    reason: str


class GroupMetricsReport(BaseModel):
    """Per-group rates for one protected attribute and the fairness differences between groups.

    - ``demographic_parity_difference``: max minus min selection rate P(pred = positive) across
      the compared groups (0 is parity).
    - ``equal_opportunity_difference``: max minus min true-positive rate across the compared
      groups whose TPR is defined (Hardt et al., NeurIPS 2016).
    - ``disparate_impact_ratio``: min over max selection rate (1 is parity); below 0.8 fails
      the "four-fifths" (80%) rule of US employment practice (Feldman et al., KDD 2015).

    Groups smaller than ``min_group_size`` are listed in ``groups`` but not compared, and
    ``excluded`` says which groups were left out of which measure and why. A measure is None when
    fewer than two groups are left to compare (or, for the ratio, when no group is selected at
    all).
    """

    model_config = ConfigDict(defer_build=True)

    attribute: str
    positive: Any
    n: int
    min_group_size: int
    groups: list[GroupMetrics]
    excluded: list[Exclusion]
    demographic_parity_difference: float | None
    disparate_impact_ratio: float | None
    equal_opportunity_difference: float | None
    highest_selection: str | None
    lowest_selection: str | None
    highest_tpr: str | None
    lowest_tpr: str | None

    @property
    def passes_four_fifths_rule(self) -> bool | None:
        """Whether the disparate-impact ratio is at least 0.8 (None when it is undefined)."""
        ratio = self.disparate_impact_ratio
        return None if ratio is None else ratio >= FOUR_FIFTHS

    def group(self, name: str) -> GroupMetrics:
        """The rates of one group by name."""
        for row in self.groups:
            if row.group == name:
                return row
        raise UnknownNameError(f"no group {name!r}; groups are {[g.group for g in self.groups]}")


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def _one_group(
    name: str, actual: np.ndarray, selected: np.ndarray, min_group_size: int
) -> GroupMetrics:
    n_pos = int(actual.sum())
    n_neg = int(len(actual) - n_pos)
    return GroupMetrics(
        group=name,
        n=len(actual),
        n_actual_positive=n_pos,
        n_actual_negative=n_neg,
        n_selected=int(selected.sum()),
        selection_rate=float(selected.mean()),
        tpr=_rate(int((selected & actual).sum()), n_pos),
        fpr=_rate(int((selected & ~actual).sum()), n_neg),
        compared=len(actual) >= min_group_size,
    )


def _exclusions(groups: list[GroupMetrics], min_group_size: int) -> list[Exclusion]:
    out: list[Exclusion] = []
    for g in groups:
        if not g.compared:
            out.append(
                Exclusion(
                    group=g.group,
                    measures=["demographic_parity", "disparate_impact", "equal_opportunity"],
                    reason=f"{g.n} rows < min_group_size {min_group_size}",
                )
            )
        elif g.tpr is None:
            out.append(
                Exclusion(
                    group=g.group,
                    measures=["equal_opportunity"],
                    reason="no actual positives, so its true-positive rate is undefined",
                )
            )
    return out


def _spread(rates: dict[str, float]) -> tuple[float | None, str | None, str | None]:
    """Max minus min of ``rates`` with the groups at each end; None with fewer than two groups."""
    if len(rates) < 2:
        return None, None, None
    high = max(rates, key=lambda k: (rates[k], k))
    low = min(rates, key=lambda k: (rates[k], k))
    return rates[high] - rates[low], high, low


def _check_inputs(y_true: np.ndarray, y_pred: np.ndarray, groups: pd.Series, positive: Any) -> None:
    if not len(y_true) == len(y_pred) == len(groups):
        raise DataError(
            f"y_true, y_pred and groups must have one entry per row; got lengths "
            f"{len(y_true)}, {len(y_pred)} and {len(groups)}"
        )
    import pandas as pd

    missing = int(pd.isna(y_true).sum())
    if missing:
        raise DataError(f"y_true has {missing} missing labels; expected none")
    _require_positive(y_true, positive, "true labels")


def group_metrics(
    y_true: Any,
    y_pred: Any,
    groups: pd.Series,
    positive: Any,
    min_group_size: int = 30,
) -> GroupMetricsReport:
    """Selection rate, TPR and FPR of each group of one protected attribute, and their spread.

    Demographic parity asks every group to be selected (predicted positive) at the same rate;
    equal opportunity (Hardt, Price and Srebro, NeurIPS 2016) asks qualified members of every
    group, the actual positives, to be selected at the same rate; the disparate-impact ratio
    (Feldman et al., KDD 2015) is the "80% rule" form of demographic parity. Rows are matched by
    position, not index. Groups smaller than ``min_group_size`` are reported but not compared,
    since their rates are too noisy to accuse or acquit a model.

    Raises
    ------
    DataError
        If the three inputs differ in length, ``y_true`` has missing labels, ``positive`` is not
        among the true labels, or ``min_group_size`` is below 1.
    """
    import numpy as np

    if min_group_size < 1:
        raise DataError(f"min_group_size must be at least 1, got {min_group_size}")
    truth, pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    _check_inputs(truth, pred, groups, positive)
    actual, selected = truth == positive, pred == positive
    rows = [
        _one_group(name, actual[mask], selected[mask], min_group_size)
        for name, mask in _ordered_groups(group_keys(groups))
    ]
    compared = [g for g in rows if g.compared]
    selection = {g.group: g.selection_rate for g in compared}
    tprs = {g.group: g.tpr for g in compared if g.tpr is not None}
    dp, high_sel, low_sel = _spread(selection)
    eo, high_tpr, low_tpr = _spread(tprs)
    ratio = None
    if high_sel is not None and low_sel is not None and selection[high_sel] > 0:
        ratio = selection[low_sel] / selection[high_sel]
    return GroupMetricsReport(
        attribute=str(groups.name) if groups.name is not None else "group",
        positive=_plain(positive),
        n=len(truth),
        min_group_size=min_group_size,
        groups=rows,
        excluded=_exclusions(rows, min_group_size),
        demographic_parity_difference=dp,
        disparate_impact_ratio=ratio,
        equal_opportunity_difference=eo,
        highest_selection=high_sel,
        lowest_selection=low_sel,
        highest_tpr=high_tpr,
        lowest_tpr=low_tpr,
    )
