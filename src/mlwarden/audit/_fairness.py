"""Group-fairness checks: demographic parity and equal opportunity across a protected attribute.

Both measure the model's held-out decisions per group of one protected column of the test split
(see :func:`mlwarden.data._bias.group_metrics`) and fail when the spread between the best- and
worst-treated groups exceeds a threshold. A check that cannot be measured (the attribute is not
a column, the task is not binary, too few groups are large enough) fails with the reason rather
than raising, so the report still lists every other finding and a fail-closed gate refuses.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from mlwarden.audit._checks import CheckContext, CheckParams, Finding, register_check
from mlwarden.data import GroupMetricsReport, group_metrics
from mlwarden.errors import DataError, SpecError

Measure = Literal["demographic_parity", "equal_opportunity"]


class GroupFairness(CheckParams):
    """Parameters shared by the group-fairness checks."""

    attribute: str = Field(min_length=1)
    max_difference: float = Field(ge=0.0, le=1.0)
    min_group_size: int = Field(default=30, ge=1)


class DemographicParity(GroupFairness):
    """Parameters of ``demographic_parity``."""


class EqualOpportunity(GroupFairness):
    """Parameters of ``equal_opportunity``."""


_METRIC: dict[Measure, str] = {
    "demographic_parity": "demographic_parity_difference",
    "equal_opportunity": "equal_opportunity_difference",
}
_RATE: dict[Measure, str] = {
    "demographic_parity": "selection rate",
    "equal_opportunity": "true-positive rate",
}


def _finding(
    check: Measure,
    params: GroupFairness,
    value: float,
    message: str,
    details: dict[str, Any],
) -> Finding:
    passed = not math.isnan(value) and value <= params.max_difference  # unmeasured fails
    return Finding(
        check=check,
        metric=_METRIC[check],
        value=value,
        threshold=params.max_difference,
        comparison="<=",
        passed=passed,
        message=message,
        details={"attribute": params.attribute, **details},
    )


def _unmeasurable(ctx: CheckContext, params: GroupFairness) -> str | None:
    """Why the check cannot be measured before querying the model, or None."""
    if params.attribute not in ctx.X_test.columns:
        return (
            f"protected attribute {params.attribute!r} is not a column of the test split; "
            f"its columns are {list(ctx.X_test.columns)}"
        )
    return None


def _positive(ctx: CheckContext) -> Any:
    """The positive class: the context's, else the second class as in the held-out metrics."""
    return ctx.positive if ctx.positive is not None else ctx.model.classes_[1]


def _describe(check: Measure, report: GroupMetricsReport, params: GroupFairness) -> str:
    """One line: the difference, between which groups, against the threshold."""
    value = getattr(report, _METRIC[check])
    high, low = (
        (report.highest_selection, report.lowest_selection)
        if check == "demographic_parity"
        else (report.highest_tpr, report.lowest_tpr)
    )
    if value is None or high is None or low is None:
        return (
            f"{_RATE[check]} not comparable across {params.attribute!r}: fewer than two groups "
            f"with at least {params.min_group_size} rows"
            + (" and a defined TPR" if check == "equal_opportunity" else "")
        )

    def rate(name: str) -> float:
        g = report.group(name)
        return g.selection_rate if check == "demographic_parity" else float(g.tpr or 0.0)

    verdict = "<=" if value <= params.max_difference else ">"
    line = (
        f"{_RATE[check]} difference {value:.4f} across {params.attribute!r} "
        f"({high} {rate(high):.4f} vs {low} {rate(low):.4f}) {verdict} {params.max_difference}"
    )
    if check == "demographic_parity" and report.disparate_impact_ratio is not None:
        rule = "meets" if report.passes_four_fifths_rule else "fails"
        line += f"; disparate impact {report.disparate_impact_ratio:.3f} ({rule} the 80% rule)"
    return line


def _details(report: GroupMetricsReport) -> dict[str, Any]:
    dumped = report.model_dump(mode="json")
    return {
        "positive": dumped["positive"],
        "n_test": dumped["n"],
        "min_group_size": dumped["min_group_size"],
        "groups": dumped["groups"],
        "excluded": dumped["excluded"],
        "demographic_parity_difference": dumped["demographic_parity_difference"],
        "equal_opportunity_difference": dumped["equal_opportunity_difference"],
        "disparate_impact_ratio": dumped["disparate_impact_ratio"],
        "passes_four_fifths_rule": report.passes_four_fifths_rule,
    }


def _measure(check: Measure, params: GroupFairness, ctx: CheckContext) -> Finding:
    """Predict the test split once, compare the groups' rates, and turn that into a finding."""
    classes = list(ctx.model.classes_)
    if len(classes) != 2:  # a policy that cannot apply to this model is the policy's mistake
        raise SpecError(
            f"{check} compares rates of a positive class: it needs a binary classifier, and "
            f"the model has {len(classes)} classes {classes}; take the check out of the policy"
        )
    reason = _unmeasurable(ctx, params)
    if reason is not None:
        return _finding(check, params, float("nan"), f"not measured: {reason}", {})
    predictions = ctx.model.predict(ctx.X_test)
    try:
        report = group_metrics(
            ctx.y_test,
            predictions,
            ctx.X_test[params.attribute],
            _positive(ctx),
            params.min_group_size,
        )
    except DataError as err:
        return _finding(check, params, float("nan"), f"not measured: {err}", {})
    value = getattr(report, _METRIC[check])
    measured = float("nan") if value is None else float(value)
    message = _describe(check, report, params)
    return _finding(check, params, measured, message, _details(report))


@register_check("demographic_parity", DemographicParity)
def demographic_parity(params: DemographicParity, ctx: CheckContext) -> Finding:
    """Selection rates must not differ much across groups of a protected attribute.

    Demographic (statistical) parity: P(pred = positive | group) should be about equal for every
    group with at least ``min_group_size`` test rows; the finding's value is max minus min, and
    its details add the disparate-impact ratio min/max with the "80% rule" verdict (Feldman et
    al., KDD 2015). Differences in base rates (see ``group_stats``) make some gap expected even
    for an accurate model; the threshold is a policy choice.
    """
    return _measure("demographic_parity", params, ctx)


@register_check("equal_opportunity", EqualOpportunity)
def equal_opportunity(params: EqualOpportunity, ctx: CheckContext) -> Finding:
    """True-positive rates must not differ much across groups of a protected attribute.

    Equal opportunity (Hardt, Price and Srebro, NeurIPS 2016): among people who truly belong to
    the positive class, each group should be selected at about the same rate; the finding's
    value is max minus min TPR over the groups with at least ``min_group_size`` test rows and at
    least one actual positive.
    """
    return _measure("equal_opportunity", params, ctx)
