"""The slowdown check: can crafted inputs wipe out an early-exit model's compute savings?

Runs DeepSloth (Hong et al., ICLR 2021) white-box against the model at its serving threshold
and gates on the efficacy reduction: the share of the early-exit savings the attack takes
away. Like the canary check it looks at a kind of model the tabular registry does not hold, so
the early-exit pipeline and ``mlwarden audit --checks slowdown`` call it directly.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from mlwarden.audit._checks import CheckParams, Finding

if TYPE_CHECKING:
    from mlwarden.models import EarlyExitNetwork


class SlowdownCheck(CheckParams):
    """Parameters of ``slowdown``: the largest efficacy reduction (percent) the policy allows
    under a DeepSloth attack of radius ``eps``, with the random-noise baseline beside it."""

    max_efficacy_reduction: float = Field(ge=0.0, le=100.0)
    eps: float = Field(default=0.2, gt=0)
    norm: Literal["linf", "l2"] = "linf"
    steps: int = Field(default=30, ge=1)
    rows: int = Field(default=300, ge=10)


def slowdown_check(
    params: SlowdownCheck, model: EarlyExitNetwork, X: Any, y: Any, threshold: float, seed: int = 0
) -> Finding:
    """DeepSloth's efficacy reduction at ``threshold`` must stay at most the allowed percent."""
    from mlwarden.attacks import deepsloth, random_slowdown

    start = time.perf_counter()
    X, y = X[: params.rows], y[: params.rows]
    attack = deepsloth(
        model, X, y, eps=params.eps, threshold=threshold, norm=params.norm,
        steps=params.steps, seed=seed,
    )  # fmt: skip
    noise = random_slowdown(
        model, X, y, eps=params.eps, threshold=threshold, norm=params.norm, seed=seed
    )
    value = attack.efficacy_reduction
    passed = value <= params.max_efficacy_reduction

    def row(name: str, r: Any) -> list[Any]:
        acc = "n/a" if r.accuracy_adversarial is None else f"{r.accuracy_adversarial:.3f}"
        return [
            name, f"{r.efficacy_adversarial:.3f}", f"{r.efficacy_reduction:.1f}%",
            f"{r.mean_compute_adversarial:.3f}", acc,
        ]  # fmt: skip

    clean_acc = "n/a" if attack.accuracy_clean is None else f"{attack.accuracy_clean:.3f}"
    return Finding(
        check="slowdown",
        metric=f"efficacy_reduction_{params.norm}_{params.eps:g}",
        value=value,
        threshold=params.max_efficacy_reduction,
        comparison="<=",
        passed=passed,
        message=f"DeepSloth ({params.norm}, eps {params.eps:g}) takes {value:.1f}% of the "
        f"early-exit savings at threshold {threshold:.3g} ({'<=' if passed else '>'} "
        f"{params.max_efficacy_reduction:g}% allowed; noise of the same size: "
        f"{noise.efficacy_reduction:.1f}%)",
        queries=attack.queries,
        wall_time_s=time.perf_counter() - start,
        details={
            "threshold": threshold,
            "efficacy_clean": attack.efficacy_clean,
            "efficacy_attacked": attack.efficacy_adversarial,
            "noise_reduction": noise.efficacy_reduction,
            "mean_compute_clean": attack.mean_compute_clean,
            "mean_compute_attacked": attack.mean_compute_adversarial,
            "tables": [
                {
                    "title": "early-exit efficacy (Hong et al. 2021)",
                    "columns": ["inputs", "efficacy", "reduction", "mean compute", "accuracy"],
                    "rows": [
                        [
                            "clean",
                            f"{attack.efficacy_clean:.3f}",
                            "-",
                            f"{attack.mean_compute_clean:.3f}",
                            clean_acc,
                        ],
                        row(f"DeepSloth {params.norm} {params.eps:g}", attack),
                        row(f"random noise {params.norm} {params.eps:g}", noise),
                    ],
                }
            ],
            "bars": {
                "labels": [f"exit {i}" for i in range(len(attack.exits_clean))]
                + [f"exit {i} (attacked)" for i in range(len(attack.exits_adversarial))],
                "values": [float(v) for v in [*attack.exits_clean, *attack.exits_adversarial]],
                "xlabel": "inputs answered at each exit",
            },
        },
    )
