"""What the white-box attacks share: argument checks, the query limiter, the best input per point.

FGSM, PGD and the robustness curve (:mod:`._gradient`, :mod:`._robust_accuracy`) all run
batched on tensors through :meth:`TorchAdapter.logits`, count every forward pass as queries
through one :class:`Limiter`, and keep per point the best adversarial input found.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from pydantic import PrivateAttr

from mlwarden._lp_ball import Norm, norms
from mlwarden.attacks._result import AttackResult, plain
from mlwarden.errors import CapabilityError, DataError, ParameterError
from mlwarden.models import TorchAdapter, require_torch

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["GradientAttackResult"]

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


class Limiter:
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


def check_args(model: Any, eps: float, norm: str, clip: tuple[float, float] | None) -> None:
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


def as_inputs(
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


class BatchOutcome:
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


def clean_pass(
    model: TorchAdapter, x: torch.Tensor, batch_size: int, limiter: Limiter
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


def gradient_result(
    attack: str,
    model: TorchAdapter,
    x: torch.Tensor,
    target: torch.Tensor,
    clean_pred: torch.Tensor,
    best: BatchOutcome,
    *,
    eps: float,
    norm: Norm,
    limiter: Limiter,
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
