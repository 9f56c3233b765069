"""Square L-inf walk (random squares at the ball's corners), with the p schedule and margin loss.

Andriushchenko, Croce, Flammarion, Hein, "Square Attack: a query-efficient black-box adversarial
attack via random search", ECCV 2020. It needs only the model's scores (no gradient), so it
catches models whose gradients mislead the gradient attacks. Each iteration redraws, per point,
a random square window of side ``sqrt(p * features / channels)`` with one random corner value
(+eps or -eps) per channel, and keeps it where the margin loss ``z_y - max_{i != y} z_i`` drops.
``p`` shrinks on the paper's schedule. One query per live point per iteration; a point stops
once misclassified.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from mlwarden._lp_ball import LpBall, Norm, view
from mlwarden.attacks._white_box import (
    BatchOutcome,
    Limiter,
)
from mlwarden.errors import ParameterError
from mlwarden.models import TorchAdapter

if TYPE_CHECKING:
    import torch

__all__ = ["image_shape", "margin", "random_search", "square_linf_batch", "square_p"]

# (last iteration of the stage, divisor of p_init) for the paper's 10,000-query schedule.
_P_STAGES = (
    (10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128),
    (8000, 256),
)  # fmt: skip


def square_p(p_init: float, it: int, n_queries: int = 10_000, rescale: bool = False) -> float:
    """Fraction of the features the window covers at iteration ``it`` (Square's p schedule).

    ``p_init`` up to iteration 10, then halved at 50, 200, 500, 1000, 2000, 4000, 6000 and 8000
    (``p_init / 512`` after). With ``rescale`` the stages are stretched to ``n_queries``; the
    AutoAttack ensemble does not rescale (Croce & Hein's ``resc_schedule=False``).
    """
    if rescale:
        it = int(it / n_queries * 10_000)
    for last, divisor in _P_STAGES:
        if it <= last:
            return p_init / divisor
    return p_init / 512


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{i != y} z_i`` per row: negative exactly where the row is misclassified."""
    z_y = logits.gather(1, y[:, None])[:, 0]
    others = logits.scatter(1, y[:, None], -math.inf)
    return z_y - others.max(dim=1).values


def image_shape(x: torch.Tensor, norm: Norm = "linf") -> tuple[int, int, int]:
    """(channels, height, width) the attack walks: 4-d as is, 3-d one channel, 2-d a square.

    L2 windows are at least 3 pixels wide, so L2 needs images at least 3 by 3.
    """
    shape = _shape(x)
    if norm == "l2" and min(shape[1:]) < 3:
        raise ParameterError(f"L2 Square needs images at least 3 by 3, got {shape[1]}x{shape[2]}")
    return shape


def _shape(x: torch.Tensor) -> tuple[int, int, int]:
    if x.ndim == 4:
        return int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
    if x.ndim == 3:
        return 1, int(x.shape[1]), int(x.shape[2])
    side = math.isqrt(int(x.shape[1])) if x.ndim == 2 else 0
    if x.ndim == 2 and side * side == x.shape[1]:
        return 1, side, side
    raise ParameterError(
        f"Square needs images: inputs of shape (n, c, h, w), (n, h, w) or (n, side**2), got "
        f"{tuple(x.shape)}"
    )


def _windows(
    n: int, c: int, h: int, w: int, s: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """A (n, c, h, w) mask per point of one random s-by-s window (the same for all channels)."""
    import torch

    top = torch.randint(0, h - s + 1, (n, 1, 1), generator=generator).to(device)
    left = torch.randint(0, w - s + 1, (n, 1, 1), generator=generator).to(device)
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + s) & (cols >= left) & (cols < left + s)
    return inside[:, None].expand(n, c, h, w)


def square_linf_batch(
    model: TorchAdapter,
    x: torch.Tensor,
    y: torch.Tensor,
    rows: torch.Tensor,
    best: BatchOutcome,
    shape: tuple[int, int, int],
    *,
    eps: float,
    n_queries: int,
    p_init: float,
    clip: tuple[float, float] | None,
    generator: torch.Generator,
    limiter: Limiter,
) -> bool:
    """Square on one batch; False where the budget stopped it."""
    import torch

    c, h, w = shape
    device = x.device
    flat = x.reshape(len(x), c, h, w)
    ball = LpBall(flat, eps, "linf", clip)
    # Start: vertical stripes of +-eps, one sign per column and channel (the paper's init).
    signs = torch.randint(0, 2, (len(x), c, 1, w), generator=generator).to(device) * 2 - 1
    x_best = ball.project(flat + eps * signs.to(x.dtype))

    def propose(idx: torch.Tensor, x_best: torch.Tensor, it: int) -> torch.Tensor:
        s = max(round(math.sqrt(square_p(p_init, it) * h * w)), 1)
        s = min(s, h - 1 if h > 1 else 1, w - 1 if w > 1 else 1)
        window = _windows(len(idx), c, h, w, s, generator, device)
        corner = torch.randint(0, 2, (len(idx), c, 1, 1), generator=generator).to(device)
        step = (corner * 2 - 1).to(x.dtype) * (2 * eps)
        return ball.subset(idx).project(torch.where(window, x_best + step, x_best))

    return random_search(model, y, rows, best, x_best, propose, x.shape, n_queries, limiter)


def random_search(
    model: TorchAdapter,
    y: torch.Tensor,
    rows: torch.Tensor,
    best: BatchOutcome,
    x_best: torch.Tensor,
    propose: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor],
    row_shape: torch.Size,
    n_queries: int,
    limiter: Limiter,
) -> bool:
    """Square's loop, either norm: query ``x_best``, then ``propose(live rows, their best, it)``
    and keep each proposal that lowers the margin; a row stops once misclassified. False where
    the budget stopped it."""
    import torch

    idx = torch.arange(len(x_best), device=x_best.device)
    loss_best: torch.Tensor | None = None
    for it in range(n_queries):
        x_new = x_best if it == 0 else propose(idx, x_best, it - 1)
        if not limiter.fits(len(idx)):
            return False
        with torch.no_grad():
            logits = model.logits(x_new.reshape(len(idx), *row_shape[1:]))
        loss = margin(logits, y[idx])
        improved = loss < loss_best if loss_best is not None else torch.ones_like(loss).bool()
        x_best = torch.where(view(improved, x_new), x_new, x_best)
        loss_best = loss if loss_best is None else torch.minimum(loss, loss_best)
        wrong = loss_best < 0
        if bool(wrong.any()):
            fooled = x_best[wrong].reshape(-1, *row_shape[1:])
            best.record_fooled(rows[idx[wrong]], fooled, -loss[wrong], logits[wrong].argmax(dim=1))
            keep = (~wrong).nonzero().flatten()
            if len(keep) == 0:
                return True
            idx, x_best, loss_best = idx[keep], x_best[keep], loss_best[keep]
    if loss_best is not None:
        flat_best = x_best.reshape(len(idx), *row_shape[1:])
        best.offer(rows[idx], flat_best, torch.zeros_like(loss_best).bool(), -loss_best, y[idx])
    return True
