"""How well early exits save compute (efficacy), and the exit threshold that keeps accuracy.

Efficacy (DeepSloth [1]_, section 3): the area under the curve of the fraction of inputs that
have exited (y) against the fraction of full compute spent (x), x from 0 to 1. Taken as the
exact step curve it equals ``1 - mean compute fraction`` (:func:`efficacy`): near 1 when every
input leaves at a cheap first IC, 0 when every input runs to the end.

References
----------
.. [1] S. Hong, Y. Kaya, I.-V. Modoranu, T. Dumitras, "A Panda? No, It's a Sloth: Slowdown
   Attacks on Adaptive Multi-Exit Neural Network Inference", ICLR 2021.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from mlwarden.errors import DataError, ParameterError

if TYPE_CHECKING:
    from mlwarden.models._sdn._network import EarlyExitNetwork

__all__ = ["ThresholdCalibration", "calibrate_threshold", "efficacy"]


def efficacy(
    exits: Any,
    costs: Any = None,
    *,
    interpolation: Literal["step", "linear"] = "step",
) -> float:
    """DeepSloth's efficacy: area under (fraction of compute, fraction of inputs exited).

    Parameters
    ----------
    exits
        Compute fraction per input in [0, 1]; or, with ``costs``, the exit index per input.
    costs
        Cumulative cost of reaching each exit (any unit; the last is the full network).
    interpolation
        ``"step"`` (default): the exact curve ``F(c) = share of inputs with fraction <= c``,
        whose area over [0, 1] is ``1 - mean fraction``. ``"linear"``: the trapezoids through
        (0, 0), the points at each exit's fraction (with ``costs``; else at each distinct
        observed fraction) and (1, 1), as the curve is drawn in the paper's plots.

    Returns
    -------
    float
        1 when everything is free, 0 when every input runs the full network (step).
    """
    values = np.asarray(exits)
    if costs is not None:
        c = np.asarray(costs, dtype=np.float64)
        if c.ndim != 1 or len(c) == 0 or c[-1] <= 0 or np.any(np.diff(c) < 0):
            raise ParameterError(
                "costs must be non-decreasing cumulative costs with a positive last"
            )
        if values.size and (values.min() < 0 or values.max() >= len(c)):
            raise ParameterError(f"exit indices must lie in 0..{len(c) - 1}")
        fractions = c[values.astype(np.int64)] / c[-1]
        points = c / c[-1]
    else:
        fractions = values.astype(np.float64)
        if fractions.size and (fractions.min() < 0 or fractions.max() > 1 + 1e-9):
            raise ParameterError("compute fractions must lie in [0, 1]")
        points = np.unique(np.append(fractions, 1.0))
    if fractions.size == 0:
        raise ParameterError("efficacy needs at least one input")
    if interpolation == "step":
        return float(1.0 - np.clip(fractions, 0.0, 1.0).mean())
    if interpolation != "linear":
        raise ParameterError(f"interpolation must be 'step' or 'linear', got {interpolation!r}")
    xs = np.concatenate([[0.0], points, [1.0]])
    ys = np.concatenate([[0.0], [(fractions <= x + 1e-12).mean() for x in points], [1.0]])
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2))


class ThresholdCalibration(BaseModel):
    """The threshold :func:`calibrate_threshold` chose and what it gives on the validation set."""

    model_config = ConfigDict(defer_build=True)

    threshold: float
    accuracy: float
    final_accuracy: float
    max_drop: float
    relative: bool
    efficacy: float
    mean_compute: float


def _simulate(
    probs: np.ndarray, threshold: float, max_exit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exit index and prediction per input from every exit's softmax (exits, n, classes)."""
    conf, pred = probs.max(axis=2), probs.argmax(axis=2)
    stop = probs.shape[0] - 1 if max_exit is None else max_exit
    hit = conf[:stop] >= threshold
    first = np.where(hit.any(axis=0), hit.argmax(axis=0), stop)
    return first, pred[first, np.arange(probs.shape[1])]


def _all_probs(model: EarlyExitNetwork, X: Any) -> np.ndarray:
    """Softmax of every exit, shape (exits, n, classes), in eval mode."""
    x = model.as_tensor(X)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outs = [torch.softmax(o, dim=1).double() for o in model.forward_all(x)]
    finally:
        model.train(was_training)
    return torch.stack(outs).numpy()


def calibrate_threshold(
    model: EarlyExitNetwork,
    X_val: Any,
    y_val: Any,
    *,
    max_drop: float = 0.05,
    relative: bool = True,
    grid: Sequence[float] | None = None,
) -> ThresholdCalibration:
    """The lowest threshold whose early-exit accuracy stays within ``max_drop`` of the final's.

    DeepSloth calibrates each SDN so that its early-exit accuracy is "within 5% of the final
    exit accuracy". With ``relative`` (default) that reads ``acc(q) >= (1 - max_drop) *
    final_acc``; otherwise ``acc(q) >= final_acc - max_drop`` (absolute). Candidates are every
    confidence an IC reaches on ``X_val`` (exact: the exits change only there) and 1.0, or
    the given ``grid``. Accuracy need not fall monotonically with ``q``; the lowest passing
    candidate is returned, or 1.0 if none passes.
    """
    if not 0.0 <= max_drop < 1.0:
        raise ParameterError(f"max_drop must lie in [0, 1), got {max_drop}")
    probs = _all_probs(model, X_val)
    y = np.asarray(y_val)
    if y.shape != (probs.shape[1],):
        raise DataError(f"{probs.shape[1]} inputs but labels of shape {y.shape}")
    final_acc = float((probs[-1].argmax(axis=1) == y).mean())
    floor = (1 - max_drop) * final_acc if relative else final_acc - max_drop
    if grid is None:
        candidates = np.unique(np.append(probs[:-1].max(axis=2).ravel(), 1.0))
    else:
        candidates = np.unique(np.asarray(grid, dtype=np.float64))
    fractions = np.asarray(model.exit_fractions)
    chosen, acc, exits = 1.0, final_acc, np.full(len(y), probs.shape[0] - 1)
    for q in candidates:
        if not 0.0 <= q <= 1.0:
            raise ParameterError(f"thresholds must lie in [0, 1], got {q}")
        e, pred = _simulate(probs, float(q))
        a = float((pred == y).mean())
        if a >= floor - 1e-12:
            chosen, acc, exits = float(q), a, e
            break
    else:
        exits, pred = _simulate(probs, 1.0)
        acc = float((pred == y).mean())
    return ThresholdCalibration(
        threshold=chosen,
        accuracy=acc,
        final_accuracy=final_acc,
        max_drop=max_drop,
        relative=relative,
        efficacy=efficacy(fractions[exits]),
        mean_compute=float(fractions[exits].mean()),
    )
