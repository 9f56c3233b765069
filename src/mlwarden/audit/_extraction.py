"""The extraction check: how close a copy can a thief make with the policy's query budget?

Runs the extraction attacks of :func:`~mlwarden.attacks.hardening_cost` against the model as it
will be served (``output``: full probabilities, rounded, top-1 or label only): equation solving
where the model is logistic-like and the output carries probabilities (Tramèr et al. 2016), and
Knockoff-style distillation for any model (Orekondy et al. 2019). The gate reads the fidelity
of the best copy at the budget on held-out rows: a model a thief can copy at 99% agreement for
2,000 queries has no secret left to keep. With ``compare_outputs`` the four serving options
are measured side by side, so the report shows how many more queries each defence costs.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field, model_validator

from mlwarden.audit._checks import CheckContext, CheckParams, Finding, register_check

_CURVE_POINTS = (100, 200, 500, 1000, 2000, 5000, 10_000, 20_000)


class Extraction(CheckParams):
    """Parameters of ``extraction``.

    ``source``: the thief's queries are drawn uniformly over the schema (``uniform``) or from a
    public data set of the domain (``public``: half of the held-out rows stand in for it, the
    other half measure fidelity). ``budgets`` are the curve's points (default: 100, 200, 500,
    ... up to ``queries``).
    """

    max_fidelity: float = Field(ge=0.0, le=1.0)
    queries: int = Field(ge=10)
    budgets: list[int] = Field(default_factory=list)
    source: Literal["uniform", "public"] = "public"
    output: Literal["probabilities", "rounded", "top1", "label"] = "probabilities"
    decimals: int = Field(default=2, ge=0, le=15)
    compare_outputs: bool = False

    @model_validator(mode="after")
    def _budgets_within_queries(self) -> Extraction:
        above = [b for b in self.budgets if b > self.queries or b < 1]
        if above:
            raise ValueError(f"budgets {above} must lie in 1..queries ({self.queries})")
        return self

    def curve_budgets(self) -> list[int]:
        """The budgets of the curve, ending at ``queries``."""
        chosen = self.budgets or [b for b in _CURVE_POINTS if b < self.queries]
        return sorted({*chosen, self.queries})


@register_check("extraction", Extraction)
def extraction(params: Extraction, ctx: CheckContext) -> Finding:
    """The best extracted copy's agreement with the model must stay at most ``max_fidelity``."""
    import numpy as np

    from mlwarden.attacks._hardening_cost import ALL_MODES, HardeningCostRow, hardening_cost

    start, before = time.perf_counter(), ctx.model.queries
    order = np.random.default_rng([ctx.seed, 11]).permutation(len(ctx.X_test))
    if params.source == "public":
        half = len(order) // 2
        public, judged = ctx.X_test.iloc[np.sort(order[:half])], np.sort(order[half:])
    else:
        public, judged = None, np.sort(order)
    X_eval, y_eval = ctx.X_test.iloc[judged], ctx.y_test.iloc[judged]
    modes = ALL_MODES if params.compare_outputs else (params.output,)
    if params.compare_outputs and params.output != "probabilities":
        modes = ("probabilities", *(m for m in ALL_MODES if m != "probabilities"))
    table = hardening_cost(
        ctx.model, ctx.X_train, X_eval, y_test=y_eval, schema=ctx.schema, modes=modes,
        decimals=params.decimals, budgets=params.curve_budgets(), source=params.source,
        X_public=public, true_model=getattr(ctx.model, "estimator", None), seed=ctx.seed,
    )  # fmt: skip
    served = [r for r in table.rows if r.mode == params.output and r.applicable]
    at_budget = {
        r.attack: max((f for q, f in r.curve if q <= params.queries), default=None) for r in served
    }
    measured = sorted((f, a) for a, f in at_budget.items() if f is not None)
    value, best = measured[-1] if measured else (None, None)
    passed = value is not None and value <= params.max_fidelity
    shown = "n/a" if value is None else f"{value:.4f}"
    targets = [f"queries to {t:.0%}" for t in table.fidelity_targets]

    def costs(row: HardeningCostRow) -> list[object]:
        if not row.applicable:
            return ["n/a"] * len(targets)
        return [c.queries if c.queries is not None else "not reached" for c in row.costs]

    rows = [
        [
            r.mode, r.attack, *costs(r),
            f"{r.final_fidelity:.4f}" if r.final_fidelity is not None else "n/a",
            r.queries_spent, r.reason or "",
        ]
        for r in table.rows
    ]  # fmt: skip
    return Finding(
        check="extraction",
        metric=f"fidelity_at_{params.queries}_queries",
        value=value,
        threshold=params.max_fidelity,
        comparison="<=",
        passed=passed,
        message=f"{best or 'no attack'} copies the {params.output} API at {shown} agreement "
        f"with {params.queries:,} {params.source} queries "
        f"({'<=' if passed else '>'} {params.max_fidelity:g} allowed)",
        queries=ctx.model.queries - before,
        wall_time_s=time.perf_counter() - start,
        details={
            "fidelity_by_attack": at_budget,
            "source": params.source,
            "evaluated_on": len(X_eval),
            "curve": {
                "series": [
                    {
                        "label": f"{r.attack}, {r.mode}",
                        "x": [q for q, _ in r.curve],
                        "y": [f for _, f in r.curve],
                    }
                    for r in table.rows
                    if r.applicable and r.curve
                ],
                "xlabel": "attacker's queries",
                "ylabel": "fidelity on held-out rows",
                "xscale": "log",
            },
            "tables": [
                {
                    "title": "extraction cost by serving option (Tramer et al. 2016; Knockoff)",
                    "columns": [
                        "output",
                        "attack",
                        *targets,
                        "final fidelity",
                        "queries spent",
                        "note",
                    ],
                    "rows": rows,
                }
            ],
        },
    )
