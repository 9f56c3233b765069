"""The evasion check: can an attacker flip the model's decision cheaply, under a threat model?

Runs the constrained tabular evasion attack on held-out rows that are not of the attacker's
target class (for a phishing detector: real phishing pages trying to pass as legitimate), and
gates on the share flipped within the cost budget the policy allows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from mlwarden.audit._checks import CheckContext, CheckParams, Finding, register_check


class Evasion(CheckParams):
    """Parameters of ``evasion``."""

    threat_model: str  # a bundled name ("phishing") or a path to a threat-model YAML
    cost_budget: float = Field(gt=0)
    max_success: float = Field(ge=0.0, le=1.0)
    rows: int = Field(default=200, ge=1)
    budget: int | None = Field(default=None, ge=0)  # queries, for the whole check
    beam_width: int | None = Field(default=8, ge=1)


@register_check("evasion", Evasion)
def evasion(params: Evasion, ctx: CheckContext) -> Finding:
    """At most ``max_success`` of attacked rows may be flipped to the target within the budget.

    The attack is score-based black-box, so a passing model resists an attacker who can query
    it; the curve of success against cost goes into the finding for the report.
    """
    from mlwarden.attacks._tabular import ThreatModel, bundled_threat_model, tabular_evasion

    start, before = time.perf_counter(), ctx.model.queries
    path = Path(params.threat_model)
    threat = (
        ThreatModel.from_yaml(path)
        if path.suffix in (".yaml", ".yml")
        else bundled_threat_model(params.threat_model)
    )
    threat.check_columns(ctx.X_test)
    attackable = ctx.X_test[(ctx.y_test != threat.target).to_numpy()]
    if len(attackable) > params.rows:
        attackable = attackable.sample(n=params.rows, random_state=ctx.seed)
    result = tabular_evasion(
        ctx.model, attackable, threat, max_cost=params.cost_budget, budget=params.budget,
        beam_width=params.beam_width, seed=ctx.seed,
    )  # fmt: skip
    flipped = sum(c is not None for c in result.cost)
    attacked = result.n_points + result.already_target
    # Rows the model already gives the attacker count as evaded at zero cost.
    share = (flipped + result.already_target) / attacked if attacked else 0.0
    passed = share <= params.max_success
    curve = result.success_curve
    return Finding(
        check="evasion",
        metric="evasion_success",
        value=share,
        threshold=params.max_success,
        comparison="<=",
        passed=passed,
        message=f"{share:.1%} of {attacked} attacked rows reach {threat.target!r} at cost "
        f"<= {params.cost_budget:g} ({'<=' if passed else '>'} {params.max_success:.0%} allowed)",
        queries=ctx.model.queries - before,
        wall_time_s=time.perf_counter() - start,
        details={
            "already_target": result.already_target,
            "queries_per_success": result.queries_per_success,
            "budget_exhausted": result.budget_exhausted,
            "examples": result.examples[:3],
            "curve": {
                "x": [c for c, _ in curve],
                "y": [s for _, s in curve],
                "xlabel": "attacker's cost budget",
                "ylabel": "share of attacked rows flipped",
            },
        },
    )


class DecisionBoundary(CheckParams):
    """Parameters of ``decision_boundary``."""

    min_median_perturbation: float = Field(gt=0)
    norm: Literal["l2", "linf"] = "l2"
    queries_per_point: int = Field(default=1000, ge=20)
    rows: int = Field(default=20, ge=1)


@register_check("decision_boundary", DecisionBoundary)
def decision_boundary(params: DecisionBoundary, ctx: CheckContext) -> Finding:
    """The median distance to a flipped decision must be at least ``min_median_perturbation``.

    Measured with HopSkipJump (Chen et al. 2020), a decision-only black-box attack, on held-out
    rows, inside the box of the training data's per-feature minimum and maximum. Numeric
    features only: the attack moves points continuously.
    """
    import numpy as np

    from mlwarden.attacks._hopskipjump import hop_skip_jump

    start, before = time.perf_counter(), ctx.model.queries
    numeric = ctx.X_test.select_dtypes("number")
    if numeric.shape[1] != ctx.X_test.shape[1]:
        return Finding(
            check="decision_boundary", metric="median_perturbation", value=None,
            threshold=params.min_median_perturbation, comparison=">=", passed=False,
            message="not measured: HopSkipJump needs numeric features only",
            queries=0, wall_time_s=time.perf_counter() - start,
        )  # fmt: skip
    rows = numeric.sample(n=min(params.rows, len(numeric)), random_state=ctx.seed)
    low = ctx.X_train.min().to_numpy(dtype=float)
    high = ctx.X_train.max().to_numpy(dtype=float)
    result = hop_skip_jump(
        ctx.model, rows.astype(float), ctx.y_test.loc[rows.index].to_numpy(), norm=params.norm,
        clip=(low, high), budget=params.queries_per_point * len(rows), seed=ctx.seed,
    )  # fmt: skip
    median = result.median_perturbation
    passed = median is None or median >= params.min_median_perturbation
    shown = "beyond reach (most points never flipped)" if median is None else f"{median:.4f}"
    return Finding(
        check="decision_boundary",
        metric=f"median_{params.norm}_perturbation",
        value=median,
        threshold=params.min_median_perturbation,
        comparison=">=",
        passed=passed,
        message=f"median {params.norm} distance to a flipped decision {shown} "
        f"({'>=' if passed else '<'} {params.min_median_perturbation:g} required), "
        f"{params.queries_per_point} queries per point",
        queries=ctx.model.queries - before,
        wall_time_s=time.perf_counter() - start,
        details={
            "success_rate": result.success_rate,
            "curve": {
                "x": [q for q, m in result.curve if m is not None],
                "y": [m for _, m in result.curve if m is not None],
                "xlabel": "queries spent",
                "ylabel": f"median {params.norm} perturbation",
            },
            "examples": result.examples[:2],
            "clip_low": float(np.min(low)),
            "clip_high": float(np.max(high)),
        },
    )
