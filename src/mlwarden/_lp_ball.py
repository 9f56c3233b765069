"""Lp-ball geometry shared by the gradient attacks and the adversarial training that uses them.

The feasible set of an evasion or slowdown attack is the eps-ball around each input (L-inf or L2),
intersected with the box the inputs live in. It sits below every layer because the attacks and
the models' adversarial training (the defence trains on the attack) both walk it.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

__all__ = ["LpBall", "Norm", "default_step", "direction", "norms", "view"]

Norm = Literal["linf", "l2"]


def norms(delta: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Per-row norm of a perturbation batch."""
    import torch

    flat = delta.flatten(1)
    if flat.shape[1] == 0:
        return flat.new_zeros(len(flat))
    out: torch.Tensor = torch.linalg.vector_norm(flat, ord=math.inf if norm == "linf" else 2, dim=1)
    return out


def view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-row vector shaped to broadcast over the other dimensions of ``like``."""
    return v.view(-1, *([1] * (like.ndim - 1)))


def direction(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """The steepest-ascent unit step for the norm: the sign (L-inf) or the normalised gradient."""
    if norm == "linf":
        return grad.sign()
    length = norms(grad, "l2")
    return grad / view(length.clamp_min(1e-12), grad)


class LpBall:
    """The feasible set of a batch: the eps-ball around each point, inside the clip box.

    For L-inf the bounds are precomputed, so projecting is one clamp per step. With the points
    inside the box, clipping moves each coordinate towards the point, so the L2 projection
    followed by the clip stays in the ball (up to float rounding, ~1e-7 of a pixel).
    """

    def __init__(
        self, x: torch.Tensor, eps: float, norm: Norm, clip: tuple[float, float] | None
    ) -> None:
        self.eps, self.norm, self.clip = eps, norm, clip
        self.parts: tuple[torch.Tensor, ...]
        if norm == "linf":
            lo, hi = x - eps, x + eps
            if clip is not None:
                lo, hi = lo.clamp_min(clip[0]), hi.clamp_max(clip[1])
            self.parts = (lo, hi)  # the per-coordinate bounds
        else:
            self.parts = (x,)  # the centres

    def subset(self, keep: torch.Tensor) -> LpBall:
        """The ball of the rows at indices ``keep``."""
        ball = copy.copy(self)
        ball.parts = tuple(t.index_select(0, keep) for t in self.parts)
        return ball

    def project(self, x_adv: torch.Tensor) -> torch.Tensor:
        """The nearest feasible point (L-inf), or the ball projection then the clip (L2)."""
        import torch

        if self.norm == "linf":
            return torch.clamp(x_adv, self.parts[0], self.parts[1])
        x = self.parts[0]
        delta = x_adv - x
        scale = (self.eps / norms(delta, "l2").clamp_min(1e-30)).clamp_max(1.0)
        out: torch.Tensor = x + delta * view(scale, delta)
        return out if self.clip is None else out.clamp(self.clip[0], self.clip[1])

    def random_start(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A uniform random point of the ball around each row of ``x``, clipped to the box.

        Drawn on the CPU in float64 from ``generator``, so it does not depend on the device.
        """
        import torch

        shape = x.shape
        if self.norm == "linf":
            noise = torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1
            delta = noise * self.eps
        else:
            dim = math.prod(shape[1:])
            flat = torch.randn((shape[0], dim), generator=generator, dtype=torch.float64)
            flat = flat / view(norms(flat, "l2").clamp_min(1e-30), flat)
            radius = torch.rand(shape[0], generator=generator, dtype=torch.float64)
            radius = radius ** (1.0 / max(dim, 1)) * self.eps
            delta = (flat * radius[:, None]).view(shape)
        return self.project(x + delta.to(device=x.device, dtype=x.dtype))


def default_step(eps: float, steps: int) -> float:
    """Madry et al.'s step: 2.5 * eps / steps, so the walk can cross the ball and back."""
    return 2.5 * eps / max(steps, 1)
