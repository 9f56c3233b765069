"""White-box evasion: FGSM and PGD on a PyTorch model, and a robust-accuracy curve.

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
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, PrivateAttr

from mlwarden._lp_ball import LpBall, Norm, default_step, direction, norms
from mlwarden.attacks._result import AttackResult, plain
from mlwarden.errors import CapabilityError, DataError, ParameterError
from mlwarden.models import TorchAdapter, require_torch

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "GradientAttackResult",
    "RobustnessCurve",
    "RobustnessPoint",
    "fgsm",
    "pgd",
    "robust_accuracy",
]

_N_EXAMPLES = 5


class GradientAttackResult(AttackResult):
    """What FGSM or PGD achieved: accuracies before and after, and per-point perturbations.

    ``success_rate`` is the fraction of the evaluated points the model classified correctly
    that the attack made it misclassify. ``clean_accuracy`` and ``adversarial_accuracy`` are
    over the ``n_evaluated`` points (all of them unless the budget ran out before the model had
    seen every point once). ``perturbation`` holds, per input point, the ``norm`` of the
    difference between the returned adversarial point and the original (0 where it was not
    attacked: the model misclassified it already, or the budget ran out first); each is at most
    ``eps``. For a point the attack did not fool this is its best attempt (highest loss). The
    adversarial inputs themselves are in :attr:`adversarial` (not serialised).
    """

    norm: Norm
    eps: float
    n_evaluated: int
    clean_accuracy: float
    adversarial_accuracy: float
    budget_exhausted: bool
    perturbation: list[float]
    _adversarial: Any = PrivateAttr(default=None)

    @property
    def adversarial(self) -> np.ndarray | None:
        """The adversarial inputs, one row per input row (the original where not attacked)."""
        return self._adversarial  # type: ignore[no-any-return]


class RobustnessPoint(BaseModel):
    """Accuracy under PGD at one epsilon; ``complete`` is False where the budget cut it short."""

    model_config = ConfigDict(defer_build=True)

    eps: float
    accuracy: float
    queries: int
    complete: bool


class RobustnessCurve(BaseModel):
    """Accuracy under PGD as epsilon grows (epsilon 0: clean accuracy), and its query cost.

    Accuracy is over the ``n_evaluated`` points. A point fooled at one epsilon counts as fooled
    at every larger one (the same adversarial input lies in the larger ball), so the curve is
    non-increasing and larger epsilons only attack the points that still resist.
    """

    model_config = ConfigDict(defer_build=True)

    attack: str = "pgd"
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


class _Limiter:
    """Queries an attack may still spend: the lesser of its own budget and the adapter's."""

    def __init__(self, model: TorchAdapter, budget: int | None) -> None:
        if budget is not None and budget < 0:
            raise ParameterError(f"budget must be a non-negative number of queries, got {budget}")
        self.model = model
        self.budget = budget
        self.start = model.queries
        self.exhausted = False

    @property
    def spent(self) -> int:
        return self.model.queries - self.start

    def left(self) -> int | None:
        own = None if self.budget is None else self.budget - self.spent
        adapter = self.model.remaining_queries
        if own is None:
            return adapter
        return own if adapter is None else min(own, adapter)

    def fits(self, n: int) -> bool:
        """Whether ``n`` more rows may be sent; marks the budget exhausted when not."""
        left = self.left()
        if left is not None and n > left:
            self.exhausted = True
            return False
        return True


def _check_args(model: Any, eps: float, norm: str, clip: tuple[float, float] | None) -> None:
    require_torch()
    if not isinstance(model, TorchAdapter):
        raise CapabilityError(
            f"white-box attacks need a TorchAdapter, got {type(model).__name__}; "
            "wrap the network with mlwarden.models.TorchAdapter(module, classes)"
        )
    if not (math.isfinite(eps) and eps >= 0):
        raise ParameterError(f"eps must be a finite number >= 0, got {eps}")
    if norm not in ("linf", "l2"):
        raise ParameterError(f"norm must be 'linf' or 'l2', got {norm!r}")
    if clip is not None and not clip[0] < clip[1]:
        raise ParameterError(f"clip must be (low, high) with low < high, got {clip}")


def _inputs(
    model: TorchAdapter, X: Any, y: Any, clip: tuple[float, float] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and label indices as tensors on the model's device, checked against the box."""
    import torch

    x = model.as_tensor(X)
    target = torch.as_tensor(model.class_index(y), device=model.device)
    if len(target) != len(x):
        raise DataError(f"{len(x)} input rows but {len(target)} labels")
    if not bool(torch.isfinite(x).all()):
        raise DataError("inputs contain NaN or infinite values")
    if clip is not None and len(x) and (x.min() < clip[0] or x.max() > clip[1]):
        raise DataError(
            f"inputs lie outside the clip box {clip} (min {float(x.min()):.4g}, "
            f"max {float(x.max()):.4g}); scale them first or pass clip=None"
        )
    return x, target


class _BatchOutcome:
    """Per-point state of one attacked batch: best input so far, fooled flag, prediction."""

    def __init__(self, x: torch.Tensor, target: torch.Tensor) -> None:
        import torch

        self.x = x.clone()
        self.fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        self.loss = torch.full((len(x),), -math.inf, dtype=torch.float64, device=x.device)
        self.pred = target.clone()

    def offer(
        self,
        rows: torch.Tensor,
        x_adv: torch.Tensor,
        fooled: torch.Tensor,
        loss: torch.Tensor,
        pred: torch.Tensor,
    ) -> None:
        """Keep each candidate that fools where the best does not, or has a higher loss."""
        import torch

        loss = loss.detach().to(torch.float64)
        old_fooled = self.fooled[rows]
        better = (fooled & ~old_fooled) | ((fooled == old_fooled) & (loss > self.loss[rows]))
        keep = rows[better]
        self.x[keep] = x_adv[better].detach()
        self.fooled[keep] = fooled[better]
        self.loss[keep] = loss[better]
        self.pred[keep] = pred[better]

    def record_fooled(
        self, rows: torch.Tensor, x_adv: torch.Tensor, loss: torch.Tensor, pred: torch.Tensor
    ) -> None:
        """Store inputs that fool the model for rows not fooled yet (early stop's fast path)."""
        import torch

        self.x[rows] = x_adv.detach()
        self.fooled[rows] = True
        self.loss[rows] = loss.detach().to(torch.float64)
        self.pred[rows] = pred


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
    limiter: _Limiter,
) -> _BatchOutcome:
    """PGD on a batch of correctly classified points; stops where the budget would run out."""
    import torch
    import torch.nn.functional as F

    best = _BatchOutcome(x, target)
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


def _clean_pass(
    model: TorchAdapter, x: torch.Tensor, batch_size: int, limiter: _Limiter
) -> torch.Tensor:
    """Clean predictions (label indices) for as many leading rows as the budget allows."""
    import torch

    preds = []
    with torch.no_grad():
        for chunk in torch.split(x, batch_size):
            left = limiter.left()
            if left is not None and left < len(chunk):
                limiter.exhausted = True
                chunk = chunk[:left]
            if len(chunk):
                preds.append(model.logits(chunk).argmax(dim=1))
            if limiter.exhausted:
                break
    if not preds:
        return torch.zeros(0, dtype=torch.long, device=x.device)
    return torch.cat(preds)


def _result(
    attack: str,
    model: TorchAdapter,
    x: torch.Tensor,
    target: torch.Tensor,
    clean_pred: torch.Tensor,
    best: _BatchOutcome,
    *,
    eps: float,
    norm: Norm,
    limiter: _Limiter,
    started: float,
    params: dict[str, Any],
) -> GradientAttackResult:
    """Assemble the result from the clean predictions and the best adversarial inputs."""
    n_eval = len(clean_pred)
    correct = clean_pred == target[:n_eval]
    fooled = best.fooled[:n_eval] & correct
    n_correct = int(correct.sum())
    n_fooled = int(fooled.sum())
    perturbation = norms(best.x - x, norm).double().cpu().numpy()
    classes = model.classes_
    t = target.cpu().numpy()
    clean = clean_pred.cpu().numpy()
    adv_pred = best.pred.cpu().numpy()
    examples = [
        {
            "index": int(i),
            "label": plain(classes[t[i]]),
            "clean_prediction": plain(classes[clean[i]]),
            "adversarial_prediction": plain(classes[adv_pred[i]]),
            "perturbation": float(perturbation[i]),
        }
        for i in fooled.nonzero().flatten().cpu().numpy()[:_N_EXAMPLES]
    ]
    result = GradientAttackResult(
        attack=attack,
        n_points=len(x),
        success_rate=n_fooled / n_correct if n_correct else 0.0,
        queries=limiter.spent,
        budget=limiter.budget,
        wall_time_s=time.perf_counter() - started,
        params=params,
        examples=examples,
        norm=norm,
        eps=eps,
        n_evaluated=n_eval,
        clean_accuracy=n_correct / n_eval if n_eval else 0.0,
        adversarial_accuracy=(n_correct - n_fooled) / n_eval if n_eval else 0.0,
        budget_exhausted=limiter.exhausted,
        perturbation=[float(v) for v in perturbation],
    )
    result._adversarial = best.x.detach().cpu().numpy()
    return result


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
    _check_args(model, eps, norm, clip)
    import torch
    import torch.nn.functional as F

    started = time.perf_counter()
    limiter = _Limiter(model, budget)
    x, target = _inputs(model, X, y, clip)
    best = _BatchOutcome(x, target)
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
    return _result(
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
    _check_args(model, eps, norm, clip)
    if steps < 0 or restarts < 1 or batch_size < 1:
        raise ParameterError("steps must be >= 0, restarts and batch_size >= 1")
    step = default_step(eps, steps) if step_size is None else step_size
    if not (math.isfinite(step) and step >= 0):
        raise ParameterError(f"step_size must be a finite number >= 0, got {step_size}")
    started = time.perf_counter()
    limiter = _Limiter(model, budget)
    x, target = _inputs(model, X, y, clip)
    clean_pred = _clean_pass(model, x, batch_size, limiter)
    best = _attack_rows(
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
    return _result(
        "pgd", model, x, target, clean_pred, best,
        eps=eps, norm=norm, limiter=limiter, started=started, params=params,
    )  # fmt: skip


def _attack_rows(
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
    limiter: _Limiter,
) -> _BatchOutcome:
    """PGD on the leading rows flagged in ``attack``, batch by batch, within the budget."""
    import torch

    best = _BatchOutcome(x, target)
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


def robust_accuracy(
    model: TorchAdapter,
    X: Any,
    y: Any,
    epsilons: Iterable[float],
    norm: Norm = "linf",
    *,
    step_size: float | None = None,
    steps: int = 40,
    restarts: int = 1,
    random_init: bool = True,
    early_stop: bool = True,
    clip: tuple[float, float] | None = (0.0, 1.0),
    budget: int | None = None,
    seed: int = 0,
    batch_size: int = 512,
) -> RobustnessCurve:
    """Accuracy under PGD at each epsilon: how fast the model breaks as the attacker grows.

    Epsilon 0 gives the clean accuracy. One clean pass serves every epsilon; epsilons are
    taken in ascending order and each attacks only the points that resisted the smaller
    ones. ``step_size`` None means ``2.5 * eps / steps`` at each epsilon; the other arguments
    are those of :func:`pgd`. The budget is shared by the whole curve: epsilons it does not
    reach are left out, and the one it cuts short is marked incomplete.
    """
    eps_list: Sequence[float] = sorted({float(e) for e in epsilons})
    if not eps_list:
        raise ParameterError("give at least one epsilon")
    for e in eps_list:
        _check_args(model, e, norm, clip)
    if steps < 0 or restarts < 1 or batch_size < 1:
        raise ParameterError("steps must be >= 0, restarts and batch_size >= 1")
    started = time.perf_counter()
    limiter = _Limiter(model, budget)
    x, target = _inputs(model, X, y, clip)
    clean_pred = _clean_pass(model, x, batch_size, limiter)
    n_eval = len(clean_pred)
    resisting = clean_pred == target[:n_eval]
    points: list[RobustnessPoint] = []
    for k, e in enumerate(eps_list):
        if e > 0 and limiter.exhausted:
            break
        before = limiter.spent
        if e > 0:
            best = _attack_rows(
                model, x, target, resisting,
                eps=e, norm=norm, step_size=default_step(e, steps) if step_size is None
                else step_size, steps=steps, restarts=restarts, random_init=random_init,
                early_stop=early_stop, clip=clip, seed=seed + k, batch_size=batch_size,
                limiter=limiter,
            )  # fmt: skip
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
        norm=norm,
        n_points=len(x),
        n_evaluated=n_eval,
        points=points,
        queries=limiter.spent,
        budget=budget,
        budget_exhausted=limiter.exhausted,
        wall_time_s=time.perf_counter() - started,
        params={
            "step_size": step_size, "steps": steps, "restarts": restarts,
            "random_init": random_init, "early_stop": early_stop, "clip": clip, "seed": seed,
            "batch_size": batch_size,
        },
    )  # fmt: skip
