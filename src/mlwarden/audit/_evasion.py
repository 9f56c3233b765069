"""The evasion check: can an attacker flip the model's decision cheaply, under a threat model?

Runs the constrained tabular evasion attack on held-out rows that are not of the attacker's
target class and that the model classifies correctly (for a phishing detector: real phishing
pages it catches, trying to pass as legitimate), and gates on the share flipped within the cost
budget the policy allows.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from mlwarden.audit._checks import (
    VERDICT_WORDS,
    CheckContext,
    CheckParams,
    Finding,
    register_check,
    span,
)
from mlwarden.audit._stats import decide, proportion_interval

if TYPE_CHECKING:
    from mlwarden.attacks import TabularEvasionResult, ThreatModel


class Evasion(CheckParams):
    """Parameters of ``evasion``."""

    threat_model: str  # a bundled name ("phishing") or a path to a threat-model YAML
    cost_budget: float = Field(gt=0)
    max_success: float = Field(ge=0.0, le=1.0)
    rows: int = Field(default=200, ge=1)
    budget: int | None = Field(default=None, ge=0)  # queries, for the whole check
    beam_width: int | None = Field(default=8, ge=1)


def _cheapest(result: TabularEvasionResult, shown: int) -> dict[str, Any]:
    """The cheapest successful changes, one row each, as a report table."""

    def change(c: dict[str, Any]) -> str:
        return f"{c['feature']}: {c['from']} -> {c['to']}"

    order = sorted(
        (k for k, c in enumerate(result.cost) if c is not None),
        key=lambda k: (result.cost[k], result.rows[k]),
    )
    return {
        "title": f"cheapest successful changes (of {len(order)})",
        "columns": ["row", "cost", "changes", f"P({result.target}) after"],
        "rows": [
            [
                result.rows[k],
                f"{result.cost[k]:g}",
                "; ".join(change(c) for c in result.changes[k]),
                f"{result.p_target[k]:.3f}",
            ]
            for k in order[:shown]
        ],
    }


def _features_used(result: TabularEvasionResult) -> dict[str, Any]:
    """How often each feature is changed by the successful evasions, most used first."""
    from collections import Counter

    counts = Counter(
        c["feature"] for k, cost in enumerate(result.cost) if cost is not None
        for c in result.changes[k]
    )  # fmt: skip
    flipped = sum(c is not None for c in result.cost)
    return {
        "title": "features the successful evasions change",
        "columns": ["feature", "evasions using it", "share of evasions"],
        "rows": [[f, n, f"{n / flipped:.1%}"] for f, n in counts.most_common(10)],
    }


def load_threat_model(name_or_path: str) -> ThreatModel:
    """A threat model from a YAML path, or a bundled one by name (``phishing``)."""
    from mlwarden.attacks import ThreatModel, bundled_threat_model

    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return ThreatModel.from_yaml(path)
    return bundled_threat_model(name_or_path)


@register_check("evasion", Evasion)
def evasion(params: Evasion, ctx: CheckContext) -> Finding:
    """At most ``max_success`` of the rows the model gets right may be flipped within the budget.

    The attacked rows are held-out rows of the other classes that the model classifies
    correctly: a row it already gives the attacker's class is a model error, reported apart,
    not an evasion. The attack is score-based black-box, so a passing model resists an
    attacker who can query it; the curve of success against cost goes into the report.
    """
    from mlwarden.attacks import tabular_evasion

    threat = load_threat_model(params.threat_model)
    threat.check_columns(ctx.X_test)
    attackable = ctx.X_test[(ctx.y_test != threat.target).to_numpy()]
    if len(attackable) > params.rows:
        attackable = attackable.sample(n=params.rows, random_state=ctx.seed)
    result = tabular_evasion(
        ctx.model, attackable, threat, max_cost=params.cost_budget, budget=params.budget,
        beam_width=params.beam_width, seed=ctx.seed,
    )  # fmt: skip
    flipped = sum(c is not None for c in result.cost)
    attacked = result.n_points
    share = flipped / attacked if attacked else None
    interval = proportion_interval(flipped, attacked) if attacked else None
    verdict = decide(share, interval, params.max_success, "<=")
    errors = result.already_target
    shown = "no row" if share is None else f"{share:.1%}"
    curve = result.success_curve
    return Finding(
        check="evasion",
        metric="evasion_success",
        value=share,
        threshold=params.max_success,
        comparison="<=",
        verdict=verdict,
        n=attacked,
        interval=interval,
        message=f"{flipped} of {attacked} correctly classified rows ({shown}{span(interval)}) "
        f"flipped to {threat.target!r} at cost <= {params.cost_budget:g}: "
        f"{VERDICT_WORDS[verdict]} {params.max_success:.0%} allowed; {errors} of "
        f"{attacked + errors} sampled rows were already misclassified as {threat.target!r} "
        "(model error, not counted)",
        details={
            "flipped": flipped,
            "attacked": attacked,
            "already_target": errors,
            "model_error_rate": errors / (attacked + errors) if attacked + errors else None,
            "queries_per_success": result.queries_per_success,
            "budget_exhausted": result.budget_exhausted,
            "examples": result.examples[:3],
            "tables": [_cheapest(result, 10), _features_used(result)] if flipped else [],
            "curve": {
                "x": [c for c, _ in curve],
                "y": [s for _, s in curve],
                "xlabel": "attacker's cost budget",
                "ylabel": "share of correctly classified rows flipped",
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

    from mlwarden.attacks import hop_skip_jump

    numeric = ctx.X_test.select_dtypes("number")
    if numeric.shape[1] != ctx.X_test.shape[1]:
        return Finding(
            check="decision_boundary", metric="median_perturbation", value=None,
            threshold=params.min_median_perturbation, comparison=">=", passed=False,
            message="not measured: HopSkipJump needs numeric features only",
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
