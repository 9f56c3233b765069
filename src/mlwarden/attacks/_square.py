"""Square attack (Andriushchenko et al., ECCV 2020): the entry point over its L-inf and L2 walks.

Score-based: it needs only the model's scores, so it catches models whose gradients mislead the
gradient attacks. The walks live in :mod:`._square_linf` and :mod:`._square_l2`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlwarden._lp_ball import Norm
from mlwarden.attacks._evasion_run import run_evasion
from mlwarden.attacks._square_l2 import square_l2_batch
from mlwarden.attacks._square_linf import image_shape, square_linf_batch
from mlwarden.attacks._white_box import (
    BatchOutcome,
    GradientAttackResult,
    Limiter,
    as_inputs,
    check_args,
)
from mlwarden.errors import ParameterError
from mlwarden.models import TorchAdapter

if TYPE_CHECKING:
    import torch

__all__ = ["square", "square_rows"]


def square_rows(
    model: TorchAdapter,
    x: torch.Tensor,
    y: torch.Tensor,
    todo: torch.Tensor,
    best: BatchOutcome,
    *,
    eps: float,
    norm: Norm,
    n_queries: int,
    p_init: float,
    clip: tuple[float, float] | None,
    generator: torch.Generator,
    batch_size: int,
    limiter: Limiter,
) -> None:
    """Square on the rows ``todo``, batch by batch; fooled rows go into ``best``."""
    import torch

    c, h, w = image_shape(x, norm)
    batch = square_l2_batch if norm == "l2" else square_linf_batch
    for rows in torch.split(todo, batch_size):
        if not batch(
            model, x[rows], y[rows], rows, best, (c, h, w), eps=eps, n_queries=n_queries,
            p_init=p_init, clip=clip, generator=generator, limiter=limiter,
        ):  # fmt: skip
            return


def square(
    model: TorchAdapter,
    X: Any,
    y: Any,
    *,
    eps: float,
    norm: Norm = "linf",
    n_queries: int = 5000,
    p_init: float = 0.8,
    clip: tuple[float, float] | None = (0.0, 1.0),
    budget: int | None = None,
    seed: int = 0,
    batch_size: int = 512,
) -> GradientAttackResult:
    """Square attack (Andriushchenko et al., ECCV 2020), L-inf or L2, from the model's scores.

    At most ``n_queries`` queries per attacked point (AutoAttack's 5000 and ``p_init`` 0.8 by
    default), plus one clean query per point; a point stops at its first misclassified
    query. Inputs must be images: (n, c, h, w), (n, h, w), or flat rows of a square image
    (``side**2`` features, one channel); for L2 at least 3 by 3. Other arguments as in
    :func:`pgd`.
    """
    check_args(model, eps, norm, clip)
    if n_queries < 1 or batch_size < 1 or not 0 < p_init <= 1:
        raise ParameterError(
            f"n_queries and batch_size must be >= 1 and p_init in (0, 1], got {n_queries}, "
            f"{batch_size}, {p_init}"
        )
    import torch

    image_shape(as_inputs(model, X, y, clip)[0], norm)
    generator = torch.Generator().manual_seed(seed)

    def attack(x: torch.Tensor, t: torch.Tensor, todo: torch.Tensor, best: BatchOutcome,
               limiter: Limiter) -> None:  # fmt: skip
        square_rows(
            model, x, t, todo, best, eps=eps, norm=norm, n_queries=n_queries, p_init=p_init,
            clip=clip, generator=generator, batch_size=batch_size, limiter=limiter,
        )  # fmt: skip

    params = {
        "norm": norm, "eps": eps, "n_queries": n_queries, "p_init": p_init, "clip": clip,
        "seed": seed, "batch_size": batch_size,
    }  # fmt: skip
    return run_evasion(
        "square", model, X, y, attack, eps=eps, norm=norm, clip=clip, budget=budget,
        batch_size=batch_size, params=params,
    )  # fmt: skip
