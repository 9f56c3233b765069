"""White-box evasion: FGSM and PGD on a PyTorch model.

Both attacks are untargeted: they push each correctly classified point to any wrong class
while keeping the perturbation inside an L-inf or L2 ball of radius ``eps`` and the inputs
inside the ``clip`` box. They run batched on tensors through :meth:`TorchAdapter.logits`,
so every forward pass, including those that give a gradient, is counted as queries, and a
query budget is never exceeded: when it runs out the attack stops and reports what it reached.

References
----------
Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015.
Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from mlwarden._lp_ball import LpBall, Norm, default_step, direction
from mlwarden.attacks._white_box import (
    BatchOutcome,
    GradientAttackResult,
    Limiter,
    as_inputs,
    check_args,
    clean_pass,
    gradient_result,
)
from mlwarden.errors import ParameterError
from mlwarden.models import TorchAdapter

if TYPE_CHECKING:
    import torch

__all__ = ["GradientAttackResult", "fgsm", "pgd"]


def _pgd_batch(
    model: TorchAdapter,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    eps: float,
    norm: Norm,
    step_size: float,
    steps: int,
    restarts: int,
    random_init: bool,
    early_stop: bool,
    clip: tuple[float, float] | None,
    generator: torch.Generator,
    limiter: Limiter,
) -> BatchOutcome:
    """PGD on a batch of correctly classified points; stops where the budget would run out."""
    import torch
    import torch.nn.functional as F

    best = BatchOutcome(x, target)
    for _ in range(restarts):
        idx = (~best.fooled).nonzero().flatten() if early_stop else torch.arange(len(x))
        idx = idx.to(x.device)  # rows of the batch still being updated in this restart
        if len(idx) == 0:
            break
        t0, x0 = target[idx], x[idx]
        ball = LpBall(x0, eps, norm, clip)
        x_adv = ball.random_start(x0, generator) if random_init else x0.clone()
        for step in range(steps + 1):
            last = step == steps
            if not limiter.fits(len(idx)):
                return best
            xl = x_adv.detach().requires_grad_(not last)
            with torch.set_grad_enabled(not last):
                logits = model.logits(xl)
                loss = F.cross_entropy(logits, t0, reduction="none")
                total = loss.sum()
            pred = logits.argmax(dim=1).detach()
            wrong = pred != t0
            if last:
                best.offer(idx, x_adv, wrong, loss, pred)
                break
            (grad,) = torch.autograd.grad(total, xl)
            if early_stop and bool(wrong.any()):
                # Live rows are never fooled yet, so the first wrong iterate is the one kept.
                hit = wrong.nonzero().flatten()
                best.record_fooled(idx[hit], x_adv[hit], loss[hit], pred[hit])
                keep = (~wrong).nonzero().flatten()
                if len(keep) == 0:
                    break
                idx, t0, ball = idx[keep], t0[keep], ball.subset(keep)
                x_adv, grad = x_adv.index_select(0, keep), grad.index_select(0, keep)
            x_adv = ball.project(x_adv + step_size * direction(grad, norm))
    return best


def fgsm(
    model: TorchAdapter,
    X: Any,
    y: Any,
    *,
    eps: float,
    norm: Norm = "linf",
    clip: tuple[float, float] | None = (0.0, 1.0),
    budget: int | None = None,
    batch_size: int = 512,
) -> GradientAttackResult:
    """Fast Gradient Sign Method: one step of size ``eps`` up the loss gradient.

    Goodfellow et al. (ICLR 2015). For L-inf the step is ``eps * sign(grad)``; for L2 it is
    ``eps * grad / ||grad||``. One forward-backward pass per point gives both the clean
    prediction and the gradient; a second pass, for the correctly classified points only,
    judges the step. Cost: at most ``2 * len(X)`` queries. Under a budget, the clean pass
    comes first; the steps that can no longer be judged are not returned.

    Parameters
    ----------
    model
        The white-box model.
    X, y
        Inputs (rows) and their true labels (values of ``model.classes_``).
    eps
        Radius of the perturbation ball in the chosen norm.
    norm
        ``"linf"`` or ``"l2"``.
    clip
        Box the inputs must stay in (the inputs must already lie in it); None: unbounded.
    budget
        Most queries this attack may spend (the adapter's own budget also holds).
    batch_size
        Rows per forward pass.
    """
    check_args(model, eps, norm, clip)
    import torch
    import torch.nn.functional as F

    started = time.perf_counter()
    limiter = Limiter(model, budget)
    x, target = as_inputs(model, X, y, clip)
    best = BatchOutcome(x, target)
    # Pass 1: clean predictions and, from the same forward pass, each point's gradient.
    clean_preds, steps = [], []
    for start in range(0, len(x), batch_size):
        left = limiter.left()
        stop = min(start + batch_size, len(x))
        if left is not None and left < stop - start:
            limiter.exhausted = True
            stop = start + left
        if stop == start:
            break
        xb = x[start:stop].clone().requires_grad_(True)
        with torch.enable_grad():
            logits = model.logits(xb)
            loss = F.cross_entropy(logits, target[start:stop], reduction="none")
            (grad,) = torch.autograd.grad(loss.sum(), xb)
        clean_preds.append(logits.argmax(dim=1).detach())
        steps.append(eps * direction(grad, norm))
        if limiter.exhausted:
            break
    clean_pred = torch.cat(clean_preds) if clean_preds else target[:0]
    # Pass 2: one step for the correctly classified points, and a forward pass to judge it.
    if steps:
        step = torch.cat(steps)
        todo = (clean_pred == target[: len(clean_pred)]).nonzero().flatten()
        for rows in torch.split(todo, batch_size):
            if not limiter.fits(len(rows)):
                break
            x_adv = LpBall(x[rows], eps, norm, clip).project(x[rows] + step[rows])
            with torch.no_grad():
                logits = model.logits(x_adv)
                loss = F.cross_entropy(logits, target[rows], reduction="none")
            adv_pred = logits.argmax(dim=1)
            best.offer(rows, x_adv, adv_pred != target[rows], loss, adv_pred)
    params = {"norm": norm, "eps": eps, "clip": clip, "batch_size": batch_size}
    return gradient_result(
        "fgsm", model, x, target, clean_pred, best,
        eps=eps, norm=norm, limiter=limiter, started=started, params=params,
    )  # fmt: skip


def pgd(
    model: TorchAdapter,
    X: Any,
    y: Any,
    *,
    eps: float,
    norm: Norm = "linf",
    step_size: float | None = None,
    steps: int = 40,
    restarts: int = 1,
    random_init: bool = True,
    early_stop: bool = True,
    clip: tuple[float, float] | None = (0.0, 1.0),
    budget: int | None = None,
    seed: int = 0,
    batch_size: int = 512,
) -> GradientAttackResult:
    """Projected Gradient Descent: iterated gradient steps projected back onto the eps-ball.

    Madry et al. (ICLR 2018). Each restart starts from a uniform random point of the ball
    (``random_init``) and takes ``steps`` steps of ``step_size`` (sign steps for L-inf,
    normalised-gradient steps for L2), projecting onto the ball and the clip box after each.
    Points the model already misclassifies are not attacked. With ``early_stop``, a point
    stops (and stops costing queries) at the first iterate the model misclassifies, and later
    restarts only attack the points still classified correctly; without it every point runs
    every step of every restart, and the final iterate of each restart is judged. Across
    restarts any success wins, then the highest loss. Cost per attacked point and restart: at
    most ``steps + 1`` queries, plus one clean query per point.

    Parameters
    ----------
    model
        The white-box model.
    X, y
        Inputs (rows) and their true labels (values of ``model.classes_``).
    eps
        Radius of the perturbation ball in the chosen norm.
    norm
        ``"linf"`` or ``"l2"``.
    step_size
        Size of each step; None: ``2.5 * eps / steps`` (Madry et al.).
    steps
        Gradient steps per restart.
    restarts
        Independent runs per point from fresh random starts (without ``random_init`` every
        run would repeat the same walk, so only one is made).
    random_init
        Start from a uniform random point of the ball rather than from the input.
    early_stop
        Stop updating (and querying) a point once it is misclassified.
    clip
        Box the inputs must stay in (the inputs must already lie in it); None: unbounded.
    budget
        Most queries this attack may spend (the adapter's own budget also holds); when the
        next forward pass would exceed it, the attack stops and reports what it reached.
    seed
        Seeds the random starts (results depend on it and on ``batch_size``).
    batch_size
        Points attacked together.
    """
    check_args(model, eps, norm, clip)
    if steps < 0 or restarts < 1 or batch_size < 1:
        raise ParameterError("steps must be >= 0, restarts and batch_size >= 1")
    step = default_step(eps, steps) if step_size is None else step_size
    if not (math.isfinite(step) and step >= 0):
        raise ParameterError(f"step_size must be a finite number >= 0, got {step_size}")
    started = time.perf_counter()
    limiter = Limiter(model, budget)
    x, target = as_inputs(model, X, y, clip)
    clean_pred = clean_pass(model, x, batch_size, limiter)
    best = attack_rows(
        model, x, target, clean_pred == target[: len(clean_pred)],
        eps=eps, norm=norm, step_size=step, steps=steps, restarts=restarts,
        random_init=random_init, early_stop=early_stop, clip=clip, seed=seed,
        batch_size=batch_size, limiter=limiter,
    )  # fmt: skip
    params = {
        "norm": norm, "eps": eps, "step_size": step, "steps": steps, "restarts": restarts,
        "random_init": random_init, "early_stop": early_stop, "clip": clip, "seed": seed,
        "batch_size": batch_size,
    }  # fmt: skip
    return gradient_result(
        "pgd", model, x, target, clean_pred, best,
        eps=eps, norm=norm, limiter=limiter, started=started, params=params,
    )  # fmt: skip


def attack_rows(
    model: TorchAdapter,
    x: torch.Tensor,
    target: torch.Tensor,
    attack: torch.Tensor,
    *,
    eps: float,
    norm: Norm,
    step_size: float,
    steps: int,
    restarts: int,
    random_init: bool,
    early_stop: bool,
    clip: tuple[float, float] | None,
    seed: int,
    batch_size: int,
    limiter: Limiter,
) -> BatchOutcome:
    """PGD on the leading rows flagged in ``attack``, batch by batch, within the budget."""
    import torch

    best = BatchOutcome(x, target)
    generator = torch.Generator().manual_seed(seed)
    restarts = restarts if random_init else 1  # from the input itself, every walk is the same
    todo = attack.nonzero().flatten()
    for rows in torch.split(todo, batch_size):
        if limiter.exhausted:
            break
        out = _pgd_batch(
            model, x[rows], target[rows],
            eps=eps, norm=norm, step_size=step_size, steps=steps, restarts=restarts,
            random_init=random_init, early_stop=early_stop, clip=clip,
            generator=generator, limiter=limiter,
        )  # fmt: skip
        best.x[rows], best.fooled[rows], best.pred[rows] = out.x, out.fooled, out.pred
        best.loss[rows] = out.loss
    return best
