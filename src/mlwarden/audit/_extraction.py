"""The extraction check: how close a copy can a thief make with the policy's query budget?

Runs the extraction attacks of :func:`~mlwarden.attacks.hardening_cost` against the model as it
will be served (``output``: full probabilities, rounded, top-1 or label only): equation solving
where the model is logistic-like and the output carries probabilities (Tramèr et al. 2016),
label-only line search under any output of a two-class linear model (Lowd & Meek 2005), and
Knockoff-style distillation for any model (Orekondy et al. 2019). The gate reads the fidelity
the best copy gains at the budget over a thief who sends no query and trains the same surrogate
on public rows with their true labels: an accurate model agrees with such a copy on most rows
already, so the raw agreement says little; what the API hands over is the gain. With
``compare_outputs`` the four serving options are measured side by side, so the report shows how
many more queries each defence costs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from mlwarden.audit._checks import (
    VERDICT_WORDS,
    CheckContext,
    CheckParams,
    Finding,
    register_check,
    span,
)
from mlwarden.audit._stats import decide
from mlwarden.errors import ParameterError

if TYPE_CHECKING:
    import pandas as pd

_CURVE_POINTS = (100, 200, 500, 1000, 2000, 5000, 10_000, 20_000)


class Extraction(CheckParams):
    """Parameters of ``extraction``.

    ``max_gain``: the most agreement (in fidelity points, 0 to 1) that ``queries`` answers may
    add over a thief who sends none and trains the same surrogate on the public rows with their
    true labels. ``source``: the thief's queries are drawn uniformly over the schema
    (``uniform``) or from a public data set of the domain (``public``). Half of the held-out
    rows stand in for that public data; the other half, with ``synthetic`` in-schema rows drawn
    from the training rows' own values column by column, measure fidelity. ``budgets`` are the
    curve's points (default: 100, 200, 500, ... up to ``queries``).
    """

    max_gain: float = Field(ge=0.0, le=1.0)
    queries: int = Field(ge=10)
    budgets: list[int] = Field(default_factory=list)
    source: Literal["uniform", "public"] = "public"
    output: Literal["probabilities", "rounded", "top1", "label"] = "probabilities"
    decimals: int = Field(default=2, ge=0, le=15)
    compare_outputs: bool = False
    synthetic: int = Field(default=1000, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _max_fidelity_is_gone(cls, data: Any) -> Any:
        if isinstance(data, dict) and "max_fidelity" in data:
            raise ParameterError(
                "max_fidelity was replaced by max_gain: the agreement queries add over a thief "
                "who trains on public rows with their true labels (an accurate model agrees "
                "with such a copy on 0.9 or more of its answers with no query at all)"
            )
        return data

    @model_validator(mode="after")
    def _budgets_within_queries(self) -> Extraction:
        above = [b for b in self.budgets if b > self.queries or b < 1]
        if above:
            raise ParameterError(f"budgets {above} must lie in 1..queries ({self.queries})")
        return self

    def curve_budgets(self) -> list[int]:
        """The budgets of the curve, ending at ``queries``."""
        chosen = self.budgets or [b for b in _CURVE_POINTS if b < self.queries]
        return sorted({*chosen, self.queries})


def _no_query_fidelity(
    ctx: CheckContext, public: pd.DataFrame, y_public: pd.Series, X_eval: pd.DataFrame, judge: Any
) -> float:
    """Agreement with the model of the default surrogate trained on the public rows and their
    true labels: what a thief holds before sending a single query."""
    import numpy as np
    import pandas as pd

    from mlwarden.attacks import TabularSurrogate

    categorical = [c for c in public.columns if not pd.api.types.is_numeric_dtype(public[c])]
    labels = y_public.to_numpy()
    if len(np.unique(labels.astype(str))) < 2:
        copy = np.full(len(X_eval), labels[0], dtype=object)
    else:
        surrogate = TabularSurrogate(categorical, seed=ctx.seed)
        copy = surrogate.fit(public, labels, np.ones(len(public))).predict(X_eval)
    return float(np.mean(np.asarray(copy) == np.asarray(judge.predict(X_eval))))


def _at(curve: list[tuple[int, float]], budget: int) -> float | None:
    """The curve's value at ``budget``: the copy made from the last point within it (an attack
    that finished early, as exact equation solving does, keeps the copy it made)."""
    within = [f for q, f in curve if q <= budget]
    return within[-1] if within else None


def _marginal_rows(X: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """In-schema synthetic rows: each column drawn on its own from the values ``X`` holds.

    Every value is one the model was trained on, so the rows stay inside the schema and the
    observed ranges, but the joint structure is gone: they test agreement off the data's
    manifold, where a copy made from real rows alone knows least.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng([seed, 13])
    picks = {c: X[c].to_numpy()[rng.integers(0, len(X), n)] for c in X.columns}
    return pd.DataFrame(picks, columns=X.columns).astype(X.dtypes)


def _gain_interval(with_q: float, without: float, n: int) -> tuple[float, float]:
    """95% interval of a difference of two agreement rates on the same ``n`` rows.

    Treated as independent (normal approximation), which overstates the spread of paired
    rates: the interval is conservative, never too narrow.
    """
    import math

    spread = math.sqrt((with_q * (1 - with_q) + without * (1 - without)) / max(n, 1))
    gain = with_q - without
    return max(gain - 1.96 * spread, -1.0), min(gain + 1.96 * spread, 1.0)


@register_check("extraction", Extraction)
def extraction(params: Extraction, ctx: CheckContext) -> Finding:
    """What ``queries`` answers add to a copy's agreement must stay at most ``max_gain``."""
    import numpy as np
    import pandas as pd

    from mlwarden.attacks import ALL_MODES, HardeningCostRow, hardening_cost

    order = np.random.default_rng([ctx.seed, 11]).permutation(len(ctx.X_test))
    half = len(order) // 2
    public_idx, judged = np.sort(order[:half]), np.sort(order[half:])
    public, y_public = ctx.X_test.iloc[public_idx], ctx.y_test.iloc[public_idx]
    synthetic = _marginal_rows(ctx.X_train, params.synthetic, ctx.seed)
    held_out = ctx.X_test.iloc[judged]
    X_eval = pd.concat([held_out, synthetic], ignore_index=True)
    true_model = getattr(ctx.model, "estimator", None)
    judge = true_model if true_model is not None else ctx.model
    modes = ALL_MODES if params.compare_outputs else (params.output,)
    if params.compare_outputs and params.output != "probabilities":
        modes = ("probabilities", *(m for m in ALL_MODES if m != "probabilities"))
    table = hardening_cost(
        ctx.model, ctx.X_train, X_eval, schema=ctx.schema, modes=modes,
        decimals=params.decimals, budgets=params.curve_budgets(), source=params.source,
        X_public=public if params.source == "public" else None, true_model=true_model,
        seed=ctx.seed,
    )  # fmt: skip
    baseline = _no_query_fidelity(ctx, public, y_public, X_eval, judge)
    served = [r for r in table.rows if r.mode == params.output and r.applicable]
    at_budget = {r.attack: _at(r.curve, params.queries) for r in served}
    measured = sorted((f, a) for a, f in at_budget.items() if f is not None)
    fidelity, best = measured[-1] if measured else (None, None)
    n = len(X_eval)
    gain = None if fidelity is None else fidelity - baseline
    interval = None if fidelity is None else _gain_interval(fidelity, baseline, n)
    verdict = decide(gain, interval, params.max_gain, "<=")
    if gain is None:
        head = f"no attack reached {params.queries:,} queries against the {params.output} API"
    else:
        head = (
            f"{best} copies the {params.output} API at {fidelity:.4f} agreement with "
            f"{params.queries:,} {params.source} queries against {baseline:.4f} with none: "
            f"queries add {gain:+.4f}{span(interval)} on {n:,} rows ({len(held_out):,} held-out, "
            f"{len(synthetic):,} synthetic)"
        )
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
    series = [
        {
            "label": f"{r.attack}, {r.mode}",
            "x": [q for q, _ in r.curve],
            "y": [f for _, f in r.curve],
        }
        for r in table.rows
        if r.applicable and r.curve
    ]
    budgets = params.curve_budgets()
    series.append(
        {
            "label": "no queries (public rows, true labels)",
            "x": budgets,
            "y": [baseline] * len(budgets),
        }
    )
    return Finding(
        check="extraction",
        metric=f"fidelity_gain_at_{params.queries}_queries",
        value=gain,
        threshold=params.max_gain,
        comparison="<=",
        verdict=verdict,
        n=n,
        interval=interval,
        message=f"{head}: {VERDICT_WORDS[verdict]} {params.max_gain:g} allowed",
        details={
            "fidelity": fidelity,
            "no_query_fidelity": baseline,
            "fidelity_by_attack": at_budget,
            "source": params.source,
            "evaluated_on": n,
            "held_out_rows": len(held_out),
            "synthetic_rows": len(synthetic),
            "public_rows": len(public),
            "curve": {
                "series": series,
                "xlabel": "attacker's queries",
                "ylabel": "fidelity on held-out and synthetic rows",
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
