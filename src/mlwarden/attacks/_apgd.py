"""APGD: PGD with a step size that adapts itself, with the cross-entropy or targeted DLR loss.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020, Algorithm 1. The step starts at ``2 * eps``; a momentum step
(alpha = 0.75) follows each projected gradient step; at the checkpoints ``w_j = ceil(p_j * N)``
the step is halved, and the walk restarts from the best point, where fewer than ``rho = 0.75``
of the steps since the last checkpoint raised the loss (condition 1) or neither the step nor the
best loss changed since then (condition 2). Batched over points; a point stops (and stops
costing queries) once misclassified; every forward-backward pass counts its rows as queries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from mlwarden._lp_ball import LpBall, Norm, direction, view
from mlwarden.attacks._evasion_run import run_evasion
from mlwarden.attacks._white_box import BatchOutcome, GradientAttackResult, Limiter, check_args
from mlwarden.errors import ParameterError
from mlwarden.models import TorchAdapter

if TYPE_CHECKING:
    import torch

__all__ = ["ApgdLoss", "apgd", "apgd_checkpoints", "dlr_loss"]

ApgdLoss = Literal["ce", "dlr-targeted"]
ALPHA = 0.75  # momentum weight of the projected gradient step
RHO = 0.75  # fraction of loss increases below which the step is halved


def apgd_checkpoints(n_iter: int) -> list[int]:
    """The iterations ``w_j = ceil(p_j * n_iter)`` at which APGD may halve its step.

    ``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, kept while
    ``p_j <= 1``. Computed in hundredths, so no float rounding moves a checkpoint.
    """
    if n_iter < 1:
        raise ParameterError(f"n_iter must be >= 1, got {n_iter}")
    p = [0, 22]
    while p[-1] <= 100:
        p.append(p[-1] + max(p[-1] - p[-2] - 3, 6))
    return [-(-q * n_iter // 100) for q in p if q <= 100]


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted Difference of Logits Ratio, per row: ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4)/2)``.

    ``pi`` orders the logits from the largest; scale- and shift-invariant, so a flat softmax
    does not hide the gradient (Croce & Hein 2020, eq. 7). Needs at least 4 classes.
    """
    if logits.shape[1] < 4:
        raise ParameterError(f"the DLR loss needs at least 4 classes, got {logits.shape[1]}")
    top = logits.topk(4, dim=1).values
    z_y = logits.gather(1, y[:, None])[:, 0]
    z_t = logits.gather(1, target[:, None])[:, 0]
    return -(z_y - z_t) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


class StepController:
    """APGD's step-size rule for a batch: per point step, best loss and checkpoint bookkeeping.

    Feed it the loss of each new iterate with :meth:`observe`; it returns the rows whose step it
    halved at a checkpoint (the caller restarts those rows from their best point).
    """

    def __init__(self, first_loss: torch.Tensor, eta: float, n_iter: int) -> None:
        import torch

        self.eta = torch.full_like(first_loss, eta)
        self.best = first_loss.clone()
        self.prev = first_loss.clone()
        self.increases = torch.zeros_like(first_loss)
        self.best_at_check = first_loss.clone()
        self.reduced_at_check = torch.zeros_like(first_loss, dtype=torch.bool)
        self.checkpoints = apgd_checkpoints(n_iter)[1:]
        self.last_check = 0

    def subset(self, keep: torch.Tensor) -> None:
        """Keep only the rows at indices ``keep`` (the others stopped)."""
        for name in ("eta", "best", "prev", "increases", "best_at_check", "reduced_at_check"):
            setattr(self, name, getattr(self, name).index_select(0, keep))

    def observe(self, k: int, loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Record ``f(x^(k))`` (``k >= 1``); returns (improved rows, rows halved and restarted)."""
        import torch

        improved = loss > self.best
        self.increases += (loss > self.prev).to(self.increases.dtype)
        self.best = torch.maximum(self.best, loss)
        self.prev = loss.clone()
        reduce = torch.zeros_like(improved)
        if k in self.checkpoints:
            window = k - self.last_check
            cond1 = self.increases < RHO * window
            cond2 = ~self.reduced_at_check & (self.best_at_check >= self.best)
            reduce = cond1 | cond2
            self.eta = self.eta.where(~reduce, self.eta / 2)
            self.prev = self.prev.where(~reduce, self.best)  # the walk goes on from the best
            self.increases.zero_()
            self.best_at_check = self.best.clone()
            self.reduced_at_check = reduce
            self.last_check = k
        return improved, reduce


def _loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    import torch.nn.functional as F

    if target is None:
        return F.cross_entropy(logits, y, reduction="none")
    return dlr_loss(logits, y, target)


def apgd_batch(
    model: TorchAdapter,
    x: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | None,
    best: BatchOutcome,
    rows: torch.Tensor,
    *,
    eps: float,
    norm: Norm,
    n_iter: int,
    clip: tuple[float, float] | None,
    generator: torch.Generator,
    limiter: Limiter,
) -> bool:
    """One APGD run (Algorithm 1) from a random start on ``x``; fooled rows go into ``best``.

    ``rows`` are the batch's row numbers in ``best``; ``target`` None: cross-entropy, else
    targeted DLR towards those classes. Returns False where the budget stopped it.
    """
    import torch

    idx = torch.arange(len(x), device=x.device)
    ball = LpBall(x, eps, norm, clip)
    x_cur = ball.random_start(x, generator)

    def evaluate(x_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        if not limiter.fits(len(x_in)):
            return None
        xl = x_in.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model.logits(xl)
            loss = _loss(logits, y[idx], None if target is None else target[idx])
            (grad,) = torch.autograd.grad(loss.sum(), xl)
        return loss.detach(), grad, logits.argmax(dim=1).detach()

    state: StepController | None = None
    x_prev = x_cur
    x_best = grad_best = x_cur  # replaced on the first pass
    for k in range(n_iter + 1):
        out = evaluate(x_cur)
        if out is None:
            return False
        loss, grad, pred = out
        if state is None:
            state = StepController(loss, 2 * eps, n_iter)
            x_best, grad_best = x_cur.clone(), grad.clone()
            improved = reduce = torch.zeros_like(loss, dtype=torch.bool)
        else:
            improved, reduce = state.observe(k, loss)
        wrong = pred != y[idx]
        if bool(wrong.any()):
            best.record_fooled(rows[idx[wrong]], x_cur[wrong], loss[wrong], pred[wrong])
            keep = (~wrong).nonzero().flatten()
            if len(keep) == 0:
                return True
            state.subset(keep)
            idx, ball = idx[keep], ball.subset(keep)
            x_cur, x_prev, grad = x_cur[keep], x_prev[keep], grad[keep]
            x_best, grad_best = x_best[keep], grad_best[keep]
            improved, reduce = improved[keep], reduce[keep]
        x_best = torch.where(view(improved, x_cur), x_cur, x_best)
        grad_best = torch.where(view(improved, grad), grad, grad_best)
        if k == n_iter:
            best.offer(rows[idx], x_best, torch.zeros_like(improved), state.best, y[idx])
            break
        x_cur = torch.where(view(reduce, x_cur), x_best, x_cur)
        grad = torch.where(view(reduce, grad), grad_best, grad)
        eta = view(state.eta.to(x_cur.dtype), x_cur)
        z = ball.project(x_cur + eta * direction(grad, norm))
        momentum = 1.0 if k == 0 else ALPHA
        x_next = ball.project(x_cur + momentum * (z - x_cur) + (1 - momentum) * (x_cur - x_prev))
        x_prev, x_cur = x_cur, x_next
    return True


def apgd_rows(
    model: TorchAdapter,
    x: torch.Tensor,
    y: torch.Tensor,
    todo: torch.Tensor,
    best: BatchOutcome,
    *,
    loss: ApgdLoss,
    eps: float,
    norm: Norm,
    n_iter: int,
    restarts: int,
    n_target_classes: int,
    clip: tuple[float, float] | None,
    generator: torch.Generator,
    batch_size: int,
    limiter: Limiter,
) -> None:
    """APGD on the rows ``todo`` not fooled yet, batch by batch; successes go into ``best``.

    The targeted DLR version runs, per point, one attack per target class: the 2nd, 3rd, ...
    ``n_target_classes + 1``-th largest clean logit (one clean pass per batch picks them).
    """
    import torch

    n_targets = 1 if loss == "ce" else n_target_classes
    for rows in torch.split(todo, batch_size):
        order = None
        if loss == "dlr-targeted":
            if not limiter.fits(len(rows)):
                return
            with torch.no_grad():
                order = model.logits(x[rows]).argsort(dim=1, descending=True)
        for rank in range(1, n_targets + 1):
            for _ in range(restarts):
                live = rows[~best.fooled[rows]]
                if len(live) == 0:
                    break
                target = None
                if order is not None:
                    target = order[~best.fooled[rows], rank]
                done = apgd_batch(
                    model, x[live], y[live], target, best, live,
                    eps=eps, norm=norm, n_iter=n_iter, clip=clip, generator=generator,
                    limiter=limiter,
                )  # fmt: skip
                if not done:
                    return


def check_apgd_args(n_iter: int, restarts: int, n_target_classes: int, batch_size: int) -> None:
    """Refuse counts APGD cannot run with, in one message."""
    if n_iter < 1 or restarts < 1 or n_target_classes < 1 or batch_size < 1:
        raise ParameterError(
            "steps, restarts, n_target_classes and batch_size must all be >= 1, got "
            f"{n_iter}, {restarts}, {n_target_classes}, {batch_size}"
        )


def apgd(
    model: TorchAdapter,
    X: Any,
    y: Any,
    *,
    eps: float,
    norm: Norm = "linf",
    loss: ApgdLoss = "ce",
    steps: int = 100,
    restarts: int = 1,
    n_target_classes: int = 9,
    clip: tuple[float, float] | None = (0.0, 1.0),
    budget: int | None = None,
    seed: int = 0,
    batch_size: int = 512,
) -> GradientAttackResult:
    """Auto-PGD (Croce & Hein, ICML 2020): PGD whose step size needs no tuning.

    ``loss="ce"`` is APGD-CE; ``loss="dlr-targeted"`` is APGD-T, which runs one targeted attack
    per point towards each of the ``n_target_classes`` classes with the next-largest clean
    logits (capped at classes - 1; the paper's default 9) with the DLR loss, and needs at least
    4 classes. Each run starts from a uniform random point of the ball and takes ``steps``
    steps; a point stops at its first misclassified iterate. Cost per attacked point and run:
    at most ``steps + 1`` forward-backward passes, plus one clean query per point (and, for
    APGD-T, one more per point to rank the targets). Other arguments as in :func:`pgd`.
    """
    check_args(model, eps, norm, clip)
    check_apgd_args(steps, restarts, n_target_classes, batch_size)
    if loss not in ("ce", "dlr-targeted"):
        raise ParameterError(f"loss must be 'ce' or 'dlr-targeted', got {loss!r}")
    n_classes = len(model.classes_)
    if loss == "dlr-targeted" and n_classes < 4:
        raise ParameterError(f"the DLR loss needs at least 4 classes, the model has {n_classes}")
    import torch

    generator = torch.Generator().manual_seed(seed)
    n_targets = min(n_target_classes, n_classes - 1)

    def attack(x: torch.Tensor, t: torch.Tensor, todo: torch.Tensor, best: BatchOutcome,
               limiter: Limiter) -> None:  # fmt: skip
        apgd_rows(
            model, x, t, todo, best, loss=loss, eps=eps, norm=norm, n_iter=steps,
            restarts=restarts, n_target_classes=n_targets, clip=clip, generator=generator,
            batch_size=batch_size, limiter=limiter,
        )  # fmt: skip

    params = {
        "norm": norm, "eps": eps, "loss": loss, "steps": steps, "restarts": restarts,
        "n_target_classes": n_target_classes, "clip": clip, "seed": seed, "batch_size": batch_size,
    }  # fmt: skip
    return run_evasion(
        "apgd-ce" if loss == "ce" else "apgd-t", model, X, y, attack, eps=eps, norm=norm,
        clip=clip, budget=budget, batch_size=batch_size, params=params,
    )  # fmt: skip
