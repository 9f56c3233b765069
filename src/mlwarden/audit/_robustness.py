"""Robust accuracy under AutoAttack (or PGD), for models that offer gradients (torch)."""

from __future__ import annotations

from typing import Literal

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


class RobustAccuracy(CheckParams):
    """Parameters of ``robust_accuracy``."""

    eps: float = Field(gt=0)
    min_accuracy: float = Field(ge=0.0, le=1.0)
    epsilons: list[float] = Field(default_factory=list)  # extra points for the curve
    norm: Literal["linf", "l2"] = "linf"
    attack: Literal["autoattack", "pgd"] = "autoattack"
    steps: int | None = Field(default=None, ge=1)  # None: 100 for autoattack, 40 for pgd
    rows: int = Field(default=500, ge=1)
    clip: tuple[float, float] = (0.0, 1.0)


@register_check("robust_accuracy", RobustAccuracy)
def robust_accuracy_check(params: RobustAccuracy, ctx: CheckContext) -> Finding:
    """Accuracy under attack at radius ``eps`` must reach ``min_accuracy``.

    The attack is AutoAttack (Croce & Hein 2020) by default, ``attack: pgd`` for PGD alone
    (Madry et al. 2018). The model must offer gradients through a torch module
    (``TorchAdapter``); the whole curve over ``epsilons`` goes into the finding for the report.
    """
    if not hasattr(ctx.model, "logits"):
        return Finding(
            check="robust_accuracy", metric=f"accuracy_at_{params.norm}_{params.eps:g}",
            value=None, threshold=params.min_accuracy, comparison=">=", passed=False,
            message=f"not measured: {params.attack} needs a differentiable model (a TorchAdapter)",
        )  # fmt: skip
    from mlwarden.attacks import robust_accuracy

    X = ctx.X_test.iloc[: params.rows] if hasattr(ctx.X_test, "iloc") else ctx.X_test[: params.rows]
    y = ctx.y_test.iloc[: params.rows] if hasattr(ctx.y_test, "iloc") else ctx.y_test[: params.rows]
    epsilons = sorted({0.0, params.eps, *params.epsilons})
    curve = robust_accuracy(
        ctx.model,  # type: ignore[arg-type]
        X, y, epsilons, params.norm, attack=params.attack, steps=params.steps, clip=params.clip,
        seed=ctx.seed,
    )  # fmt: skip
    at = {point.eps: point.accuracy for point in curve.points}
    value = at.get(params.eps)
    n = len(y)
    interval = None if value is None else proportion_interval(round(value * n), n)
    verdict = decide(value, interval, params.min_accuracy, ">=")
    shown = "n/a" if value is None else f"{value:.4f}{span(interval)} on {n} rows"
    return Finding(
        check="robust_accuracy",
        metric=f"accuracy_at_{params.norm}_{params.eps:g}",
        value=value,
        threshold=params.min_accuracy,
        comparison=">=",
        verdict=verdict,
        n=n,
        interval=interval,
        message=f"accuracy under {params.norm} {params.attack} at eps {params.eps:g}: {shown}: "
        f"{VERDICT_WORDS[verdict]} the floor {params.min_accuracy}",
        details={
            "curve": {
                "x": [p.eps for p in curve.points],
                "y": [p.accuracy for p in curve.points],
                "xlabel": f"{params.norm} epsilon",
                "ylabel": "robust accuracy",
            }
        },
    )
