"""AutoAttack: APGD-CE, then APGD-T (targeted DLR), then Square, each on the points still robust.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020 (the "standard" version: APGD-CE and APGD-T with 100 steps
and one restart, APGD-T over 9 target classes, Square with 5000 queries and p_init 0.8). A
point counts as robust only if every attack fails on it, so the ensemble is at least as strong
as each member; the later, costlier attacks only see the points the earlier ones left.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mlwarden._lp_ball import Norm
from mlwarden.attacks._apgd import apgd_rows, check_apgd_args
from mlwarden.attacks._evasion_run import run_evasion
from mlwarden.attacks._square import square_rows
from mlwarden.attacks._square_linf import image_shape
from mlwarden.attacks._white_box import BatchOutcome, GradientAttackResult, Limiter, check_args
from mlwarden.errors import ParameterError
from mlwarden.models import TorchAdapter

if TYPE_CHECKING:
    import torch

__all__ = ["autoattack"]

logger = logging.getLogger(__name__)


def ensemble_members(model: TorchAdapter, x: torch.Tensor, norm: Norm) -> list[str]:
    """The members that apply: APGD-T needs 4 classes, Square needs image inputs."""
    members = ["apgd-ce"]
    if len(model.classes_) >= 4:
        members.append("apgd-t")
    else:
        logger.info("autoattack: APGD-T skipped, the DLR loss needs at least 4 classes")
    try:
        image_shape(x, norm)
        members.append("square")
    except ParameterError as exc:
        logger.info("autoattack: Square skipped: %s", exc)
    return members


def autoattack_rows(
    model: TorchAdapter,
    x: torch.Tensor,
    target: torch.Tensor,
    attack: torch.Tensor,
    *,
    eps: float,
    norm: Norm,
    steps: int,
    n_target_classes: int,
    square_queries: int,
    clip: tuple[float, float] | None,
    seed: int,
    batch_size: int,
    limiter: Limiter,
) -> tuple[BatchOutcome, dict[str, int]]:
    """The ensemble on the leading rows flagged in ``attack``; the best per point and who won.

    Returns the per-point outcome and, per member run, how many points it fooled.
    """
    import torch

    best = BatchOutcome(x, target)
    generator = torch.Generator().manual_seed(seed)
    fooled_by: dict[str, int] = {}
    n_targets = min(n_target_classes, len(model.classes_) - 1)
    for member in ensemble_members(model, x, norm):
        if limiter.exhausted:
            break
        todo = (attack & ~best.fooled[: len(attack)]).nonzero().flatten()
        before = int(best.fooled.sum())
        if member == "square":
            square_rows(
                model, x, target, todo, best, eps=eps, norm=norm, n_queries=square_queries,
                p_init=0.8, clip=clip, generator=generator, batch_size=batch_size, limiter=limiter,
            )  # fmt: skip
        else:
            apgd_rows(
                model, x, target, todo, best, loss="ce" if member == "apgd-ce" else "dlr-targeted",
                eps=eps, norm=norm, n_iter=steps, restarts=1, n_target_classes=n_targets,
                clip=clip, generator=generator, batch_size=batch_size, limiter=limiter,
            )  # fmt: skip
        fooled_by[member] = int(best.fooled.sum()) - before
    return best, fooled_by


def autoattack(
    model: TorchAdapter,
    X: Any,
    y: Any,
    *,
    eps: float,
    norm: Norm = "linf",
    steps: int = 100,
    n_target_classes: int = 9,
    square_queries: int = 5000,
    clip: tuple[float, float] | None = (0.0, 1.0),
    budget: int | None = None,
    seed: int = 0,
    batch_size: int = 512,
) -> GradientAttackResult:
    """AutoAttack (Croce & Hein, ICML 2020), the standard ensemble, worst case per point.

    Runs APGD-CE, APGD-T (DLR loss, ``n_target_classes`` targets, at least 4 classes) and, on
    image inputs, Square (``square_queries`` per point), each on the points the previous ones
    left robust. Members that do not apply are skipped and left out of ``params["fooled_by"]``,
    which counts the points each member fooled. Query accounting and the budget are those of
    :func:`pgd`: one clean query per point, then every forward pass of every member.
    """
    check_args(model, eps, norm, clip)
    check_apgd_args(steps, 1, n_target_classes, batch_size)
    if square_queries < 1:
        raise ParameterError(f"square_queries must be >= 1, got {square_queries}")
    import torch

    fooled_by: dict[str, int] = {}

    def attack(x: torch.Tensor, t: torch.Tensor, todo: torch.Tensor, best: BatchOutcome,
               limiter: Limiter) -> None:  # fmt: skip
        mask = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        mask[todo] = True
        found, counts = autoattack_rows(
            model, x, t, mask, eps=eps, norm=norm, steps=steps,
            n_target_classes=n_target_classes, square_queries=square_queries, clip=clip,
            seed=seed, batch_size=batch_size, limiter=limiter,
        )  # fmt: skip
        best.x, best.fooled, best.loss, best.pred = found.x, found.fooled, found.loss, found.pred
        fooled_by.update(counts)

    params = {
        "norm": norm, "eps": eps, "steps": steps, "n_target_classes": n_target_classes,
        "square_queries": square_queries, "clip": clip, "seed": seed, "batch_size": batch_size,
        "fooled_by": fooled_by,
    }  # fmt: skip
    return run_evasion(
        "autoattack", model, X, y, attack, eps=eps, norm=norm, clip=clip, budget=budget,
        batch_size=batch_size, params=params,
    )  # fmt: skip
