"""Square attack in L2: pseudo-Gaussian square updates that move mass between two windows.

Andriushchenko, Croce, Flammarion, Hein, ECCV 2020, Algorithm 3 (as in the reference code the
AutoAttack ensemble runs). Each iteration picks two s-by-s windows (s odd, at least 3, from the
same p schedule as L-inf); the first gets a fresh pseudo-Gaussian bump of random sign per
channel added to its normalised old perturbation, the second is emptied, and the bump takes
the L2 mass both windows held plus what the ball had left; the whole perturbation is then
rescaled onto the eps-sphere. Kept where the margin loss drops; one query per live point.
"""

from __future__ import annotations

import math
from functools import cache
from typing import TYPE_CHECKING

from mlwarden._lp_ball import norms, view
from mlwarden.attacks._square_linf import random_search, square_p
from mlwarden.attacks._white_box import BatchOutcome, Limiter

if TYPE_CHECKING:
    import torch

    from mlwarden.models import TorchAdapter

__all__ = ["pseudo_gaussian", "square_l2_batch"]


@cache
def _rectangles(rows: int, cols: int) -> tuple[tuple[float, ...], ...]:
    """Nested rectangles around the centre, each ring weighted 1 / (ring + 1)^2, unit L2 norm."""
    out = [[0.0] * cols for _ in range(rows)]
    top, left = rows // 2, cols // 2
    for ring in range(max(rows // 2 + 1, cols // 2 + 1)):
        for i in range(max(top - ring, 0), min(top + ring + 1, rows)):
            for j in range(max(left - ring, 0), min(left + ring + 1, cols)):
                out[i][j] += 1.0 / (ring + 1) ** 2
    total = math.sqrt(sum(v * v for row in out for v in row)) or 1.0
    return tuple(tuple(v / total for v in row) for row in out)


def pseudo_gaussian(s: int) -> torch.Tensor:
    """The s-by-s update: a positive bump over the top half, a negative one below, unit norm."""
    import torch

    upper = torch.tensor(_rectangles(s // 2, s), dtype=torch.float64).reshape(s // 2, s)
    lower = torch.tensor(_rectangles(s - s // 2, s), dtype=torch.float64).reshape(s - s // 2, s)
    delta = torch.cat([upper, -lower])
    out: torch.Tensor = delta / torch.linalg.vector_norm(delta)
    return out


def _random_signs(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    import torch

    return torch.randint(0, 2, shape, generator=generator).to(torch.float64) * 2 - 1


def _onto_sphere(
    x: torch.Tensor, delta: torch.Tensor, eps: float, clip: tuple[float, float] | None
) -> torch.Tensor:
    """``x`` plus ``delta`` rescaled to L2 norm ``eps``, clipped to the box."""
    out = x + delta / view(norms(delta, "l2") + 1e-12, delta) * eps
    return out if clip is None else out.clamp(clip[0], clip[1])


def square_l2_batch(
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
    """L2 Square on one batch (``shape`` is (c, h, w), h and w >= 3); False where the budget
    stopped it."""
    import torch

    c, h, w = shape
    n = len(x)
    img = x.reshape(n, c, h, w)
    # Start: a grid of pseudo-Gaussian tiles of side h // 5, random sign per tile and channel.
    tile = max(h // 5, 1)
    start = (h - tile * 5) // 2 if h >= 5 else 0
    delta = torch.zeros(img.shape, dtype=torch.float64)
    bump = pseudo_gaussian(tile)
    for top in range(start, h - tile + 1, tile):
        for left in range(start, w - tile + 1, tile):
            delta[:, :, top : top + tile, left : left + tile] += bump * _random_signs(
                (n, c, 1, 1), generator
            )
    delta = delta.to(device=x.device, dtype=x.dtype)
    x_best = _onto_sphere(img, delta, eps, clip)

    def propose(idx: torch.Tensor, x_best: torch.Tensor, it: int) -> torch.Tensor:
        return _step(img[idx], x_best, it, shape, eps, p_init, clip, generator)

    return random_search(model, y, rows, best, x_best, propose, x.shape, n_queries, limiter)


def _step(
    x: torch.Tensor,
    x_best: torch.Tensor,
    it: int,
    shape: tuple[int, int, int],
    eps: float,
    p_init: float,
    clip: tuple[float, float] | None,
    generator: torch.Generator,
) -> torch.Tensor:
    """One L2 Square proposal per row: refill window 1, empty window 2, back onto the sphere."""
    import torch

    c, h, w = shape
    s = max(round(math.sqrt(square_p(p_init, it) * h * w)), 3)
    s = min(s + (s % 2 == 0), h, w)
    top, left, top2, left2 = (
        int(torch.randint(0, size - s + 1, (1,), generator=generator)) for size in (h, w, h, w)
    )
    delta = x_best - x
    win = (slice(None), slice(None), slice(top, top + s), slice(left, left + s))
    win2 = (slice(None), slice(None), slice(top2, top2 + s), slice(left2, left2 + s))
    both = torch.zeros_like(delta, dtype=torch.bool)
    both[win] = True
    both[win2] = True
    norm_image = view(norms(delta, "l2"), delta)
    norm_windows = view(norms(delta * both, "l2"), delta)
    old = delta[win]
    old = old / (old.pow(2).sum(dim=(-2, -1), keepdim=True).sqrt() + 1e-12)
    bump = pseudo_gaussian(s)
    if bool(torch.rand(1, generator=generator) > 0.5):
        bump = bump.T
    signs = _random_signs((len(x), c, 1, 1), generator)
    new = old + (bump * signs).to(device=x.device, dtype=x.dtype)
    room = ((eps**2 - norm_image**2).clamp_min(0) / c + norm_windows**2).sqrt()
    new = new / (new.pow(2).sum(dim=(-2, -1), keepdim=True).sqrt() + 1e-12) * room
    delta = delta.clone()
    delta[win2] = 0.0
    delta[win] = new
    return _onto_sphere(x, delta, eps, clip)
