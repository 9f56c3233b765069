"""The frame every white-box evasion entry point shares: clean pass, attack, result.

APGD, Square and AutoAttack differ only in how they attack the points the model classifies
correctly; the query limiter, the clean pass and the result are the same, written once here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlwarden._lp_ball import Norm
from mlwarden.attacks._white_box import (
    BatchOutcome,
    GradientAttackResult,
    Limiter,
    as_inputs,
    clean_pass,
    gradient_result,
)
from mlwarden.models import TorchAdapter

if TYPE_CHECKING:
    import torch

__all__ = ["RowAttack", "run_evasion"]

# (inputs, label indices, rows to attack, per-point outcome, limiter) -> None; fills the outcome.
RowAttack = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor", BatchOutcome, Limiter], None]


def run_evasion(
    name: str,
    model: TorchAdapter,
    X: Any,
    y: Any,
    attack: RowAttack,
    *,
    eps: float,
    norm: Norm,
    clip: tuple[float, float] | None,
    budget: int | None,
    batch_size: int,
    params: dict[str, Any],
) -> GradientAttackResult:
    """Clean pass, then ``attack`` on the correctly classified rows, within one budget."""
    started = time.perf_counter()
    limiter = Limiter(model, budget)
    x, target = as_inputs(model, X, y, clip)
    clean_pred = clean_pass(model, x, batch_size, limiter)
    best = BatchOutcome(x, target)
    todo = (clean_pred == target[: len(clean_pred)]).nonzero().flatten()
    attack(x, target, todo, best, limiter)
    return gradient_result(
        name, model, x, target, clean_pred, best,
        eps=eps, norm=norm, limiter=limiter, started=started, params=params,
    )  # fmt: skip
