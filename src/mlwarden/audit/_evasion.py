"""The evasion check: can an attacker flip the model's decision cheaply, under a threat model?

Runs the constrained tabular evasion attack on held-out rows that are not of the attacker's
target class (for a phishing detector: real phishing pages trying to pass as legitimate), and
gates on the share flipped within the cost budget the policy allows.
"""

from __future__ import annotations

import time
from pathlib import Path

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
