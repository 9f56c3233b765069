"""The DeepSloth objective and its PGD walk, shared by the slowdown attack and the defence.

``slowdown_loss`` is 0 exactly when every internal classifier is maximally unsure, so descending it
pushes inputs past every early exit (Hong et al., ICLR 2021). The attack in
:mod:`mlwarden.attacks` and adversarial training in :func:`~mlwarden.models.train_sdn` both craft
inputs with :func:`craft_slowdown`; it lives here, below both, so the model layer does not import
the attack layer.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from mlwarden._lp_ball import LpBall, Norm, default_step, direction
from mlwarden.errors import ModelError

if TYPE_CHECKING:
    from mlwarden.models._sdn._network import EarlyExitNetwork

__all__ = ["craft_slowdown", "slowdown_loss"]


def slowdown_loss(outputs: list[torch.Tensor]) -> torch.Tensor:
    """Per-row DeepSloth loss: the sum over ICs (all exits but the last) of KL(uniform || p).

    0 exactly when every IC's softmax is uniform.
    """
    if len(outputs) < 2:
        raise ModelError("a slowdown attack needs at least one internal classifier")
    total = outputs[0].new_zeros(len(outputs[0]))
    for logits in outputs[:-1]:
        n_classes = logits.shape[1]
        total = total - F.log_softmax(logits, dim=1).mean(dim=1) - math.log(n_classes)
    return total


def craft_slowdown(
    model: EarlyExitNetwork,
    x: torch.Tensor,
    *,
    eps: float,
    norm: Norm,
    steps: int,
    step_size: float | None,
    clip: tuple[float, float] | None,
    generator: torch.Generator,
    random_init: bool = True,
) -> torch.Tensor:
    """PGD descent on :func:`slowdown_loss` from a random start; each row's best iterate.

    The network should be in eval mode; gradients reach the input only.
    """
    step = default_step(eps, steps) if step_size is None else step_size
    ball = LpBall(x, eps, norm, clip)
    x_adv = ball.random_start(x, generator) if random_init and eps > 0 else x.clone()
    best, best_loss = x_adv.clone(), torch.full((len(x),), math.inf, dtype=x.dtype)
    for i in range(steps + 1):
        xl = x_adv.detach().requires_grad_(i < steps)
        with torch.set_grad_enabled(i < steps):
            loss = slowdown_loss(model.forward_all(xl))
        better = loss.detach() < best_loss
        best[better], best_loss[better] = x_adv[better].detach(), loss.detach()[better]
        if i == steps:
            break
        (grad,) = torch.autograd.grad(loss.sum(), xl)
        x_adv = ball.project(x_adv.detach() - step * direction(grad, norm))
    return best.detach()
