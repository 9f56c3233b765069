"""Robust accuracy: accuracy under attack as epsilon grows, the curve a robustness claim rests on.

Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018 (robustness reported as accuracy under PGD per epsilon);
Croce & Hein, ICML 2020 (AutoAttack, the default here: PGD alone overestimates robustness).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from mlwarden._lp_ball import Norm, default_step
from mlwarden.attacks._autoattack import autoattack_rows
from mlwarden.attacks._gradient import attack_rows
from mlwarden.attacks._white_box import Limiter, as_inputs, check_args, clean_pass
from mlwarden.errors import ParameterError
from mlwarden.models import TorchAdapter

__all__ = ["EvasionAttack", "RobustnessCurve", "RobustnessPoint", "robust_accuracy"]

EvasionAttack = Literal["autoattack", "pgd"]


class RobustnessPoint(BaseModel):
    """Accuracy under attack at one epsilon; ``complete`` is False where the budget cut it short."""

    model_config = ConfigDict(defer_build=True)

    eps: float
    accuracy: float
    queries: int
    complete: bool


class RobustnessCurve(BaseModel):
    """Accuracy under attack as epsilon grows (epsilon 0: clean accuracy), and its query cost.

    Accuracy is over the ``n_evaluated`` points. A point fooled at one epsilon counts as fooled
    at every larger one (the same adversarial input lies in the larger ball), so the curve is
    non-increasing and larger epsilons only attack the points that still resist.
    """

    model_config = ConfigDict(defer_build=True)

    attack: EvasionAttack = "autoattack"
    norm: Norm
    n_points: int
    n_evaluated: int
    points: list[RobustnessPoint]
    queries: int
    budget: int | None
    budget_exhausted: bool
    wall_time_s: float
    params: dict[str, Any]

    @property
    def epsilons(self) -> list[float]:
        """The epsilons evaluated, ascending."""
        return [p.eps for p in self.points]

    @property
    def accuracies(self) -> list[float]:
        """Accuracy at each epsilon of :attr:`epsilons`."""
        return [p.accuracy for p in self.points]


def robust_accuracy(
    model: TorchAdapter,
    X: Any,
    y: Any,
    epsilons: Iterable[float],
    norm: Norm = "linf",
    *,
    attack: EvasionAttack = "autoattack",
    step_size: float | None = None,
    steps: int | None = None,
    restarts: int = 1,
    random_init: bool = True,
    early_stop: bool = True,
    clip: tuple[float, float] | None = (0.0, 1.0),
    budget: int | None = None,
    seed: int = 0,
    batch_size: int = 512,
    n_target_classes: int = 9,
    square_queries: int = 5000,
) -> RobustnessCurve:
    """Accuracy under attack at each epsilon: how fast the model breaks as the attacker grows.

    ``attack="autoattack"`` (default) runs :func:`autoattack` (``steps`` None: its 100 APGD
    steps, with ``n_target_classes`` and ``square_queries``); ``attack="pgd"`` runs
    :func:`pgd` (``steps`` None: 40; ``step_size`` None: ``2.5 * eps / steps``; ``restarts``,
    ``random_init`` and ``early_stop`` apply to it only). Epsilon 0 gives the clean accuracy.
    One clean pass serves every epsilon; epsilons are taken in ascending order and each attacks
    only the points that resisted the smaller ones. The budget is shared by the whole curve:
    epsilons it does not reach are left out, and the one it cuts short is marked incomplete.
    """
    eps_list: Sequence[float] = sorted({float(e) for e in epsilons})
    if not eps_list:
        raise ParameterError("give at least one epsilon")
    for e in eps_list:
        check_args(model, e, norm, clip)
    if attack not in ("autoattack", "pgd"):
        raise ParameterError(f"attack must be 'autoattack' or 'pgd', got {attack!r}")
    if steps is None:
        steps = 100 if attack == "autoattack" else 40
    if steps < 0 or restarts < 1 or batch_size < 1:
        raise ParameterError("steps must be >= 0, restarts and batch_size >= 1")
    started = time.perf_counter()
    limiter = Limiter(model, budget)
    x, target = as_inputs(model, X, y, clip)
    clean_pred = clean_pass(model, x, batch_size, limiter)
    n_eval = len(clean_pred)
    resisting = clean_pred == target[:n_eval]
    points: list[RobustnessPoint] = []
    for k, e in enumerate(eps_list):
        if e > 0 and limiter.exhausted:
            break
        before = limiter.spent
        if e > 0 and attack == "autoattack":
            best, _ = autoattack_rows(
                model, x, target, resisting, eps=e, norm=norm, steps=max(steps, 1),
                n_target_classes=n_target_classes, square_queries=square_queries, clip=clip,
                seed=seed + k, batch_size=batch_size, limiter=limiter,
            )  # fmt: skip
        elif e > 0:
            best = attack_rows(
                model, x, target, resisting,
                eps=e, norm=norm, step_size=default_step(e, steps) if step_size is None
                else step_size, steps=steps, restarts=restarts, random_init=random_init,
                early_stop=early_stop, clip=clip, seed=seed + k, batch_size=batch_size,
                limiter=limiter,
            )  # fmt: skip
        if e > 0:
            resisting = resisting & ~best.fooled[:n_eval]
        points.append(
            RobustnessPoint(
                eps=e,
                accuracy=int(resisting.sum()) / n_eval if n_eval else 0.0,
                queries=limiter.spent - (0 if k == 0 else before),
                complete=not limiter.exhausted,
            )
        )
    return RobustnessCurve(
        attack=attack,
        norm=norm,
        n_points=len(x),
        n_evaluated=n_eval,
        points=points,
        queries=limiter.spent,
        budget=budget,
        budget_exhausted=limiter.exhausted,
        wall_time_s=time.perf_counter() - started,
        params={
            "step_size": step_size, "steps": steps, "n_target_classes": n_target_classes,
            "square_queries": square_queries, "restarts": restarts,
            "random_init": random_init, "early_stop": early_stop, "clip": clip, "seed": seed,
            "batch_size": batch_size,
        },
    )  # fmt: skip
