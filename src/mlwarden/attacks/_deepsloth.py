"""DeepSloth: slowdown attacks that make early-exit networks spend their full compute.

An early-exit network (:class:`~mlwarden.models._sdn.EarlyExitNetwork`) saves compute by
letting an input leave at the first internal classifier (IC) that is confident enough.
DeepSloth [1]_ perturbs inputs, inside an L-inf or L2 ball of radius ``eps`` and the
``[0, 1]`` box, so that every IC is unsure: projected gradient descent on

    ``L(x') = sum over ICs k (the final classifier excluded) of KL(uniform || softmax(f_k(x')))``

(the cross-entropy to the uniform distribution, less ``log C``). No IC then reaches the
threshold and the input runs to the final exit, which still answers, often correctly.

* :func:`deepsloth` - the white-box attack on the victim itself (paper: 90-100% efficacy lost).
* :func:`universal_deepsloth` - one input-agnostic perturbation optimised on a training set,
  applied to unseen inputs.
* :func:`transfer_deepsloth` - crafted on a surrogate network, applied to the victim
  (paper: 20-50% efficacy lost).
* :func:`random_slowdown` - the baseline: random noise of the same norm.

Every result reports the efficacy (area under the exited-fraction against compute-fraction
curve; see :func:`~mlwarden.models._sdn.efficacy`) before and after, its reduction in percent,
early-exit accuracy, average compute, and wall-clock latency at batch size 1 before and after.
The defence, adversarial training on these examples, is ``train_sdn(adversarial_eps=...)``.

References
----------
.. [1] S. Hong, Y. Kaya, I.-V. Modoranu, T. Dumitras, "A Panda? No, It's a Sloth: Slowdown
   Attacks on Adaptive Multi-Exit Neural Network Inference", ICLR 2021.
.. [2] Y. Kaya, S. Hong, T. Dumitras, "Shallow-Deep Networks: Understanding and Mitigating
   Network Overthinking", ICML 2019.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from pydantic import PrivateAttr

from mlwarden._lp_ball import Norm, default_step, direction, norms
from mlwarden._tasks import current_runner, item_seeds, task_map
from mlwarden.attacks._result import AttackResult
from mlwarden.errors import CapabilityError, DataError, ModelError, ParameterError
from mlwarden.models import (
    EarlyExitNetwork,
    EarlyExitOutput,
    LatencyStats,
    craft_slowdown,
    measure_latency,
    slowdown_loss,
)

__all__ = [
    "SlowdownResult",
    "deepsloth",
    "random_slowdown",
    "slowdown_loss",
    "transfer_deepsloth",
    "universal_deepsloth",
]


class SlowdownResult(AttackResult):
    """What a slowdown attack did to an early-exit network's efficacy, accuracy and latency.

    ``efficacy_reduction`` is ``100 * (clean - adversarial) / clean`` (percent of the clean
    efficacy lost). ``success_rate`` is the share of inputs that left before the final exit
    when clean and leave later when perturbed. Accuracies are of the early-exit predictions
    (None without labels). ``exits_*`` count the inputs leaving at each exit. ``queries``
    counts rows sent through the victim: crafting passes (none for a transfer) and the
    adversarial evaluation. The perturbed inputs are in :attr:`adversarial`, and a universal
    attack's single perturbation in :attr:`perturbation` (neither serialised).
    """

    norm: Norm
    eps: float
    threshold: float
    efficacy_clean: float
    efficacy_adversarial: float
    efficacy_reduction: float
    accuracy_clean: float | None
    accuracy_adversarial: float | None
    mean_compute_clean: float
    mean_compute_adversarial: float
    exits_clean: list[int]
    exits_adversarial: list[int]
    max_perturbation: float
    latency_clean: LatencyStats | None
    latency_adversarial: LatencyStats | None
    _adversarial: Any = PrivateAttr(default=None)
    _perturbation: Any = PrivateAttr(default=None)

    @property
    def adversarial(self) -> np.ndarray | None:
        """The perturbed inputs, one row per input row."""
        return self._adversarial  # type: ignore[no-any-return]

    @property
    def perturbation(self) -> np.ndarray | None:
        """The universal perturbation (one input's shape); None for per-input attacks."""
        return self._perturbation  # type: ignore[no-any-return]


def _check(model: Any, eps: float, norm: str, steps: int, threshold: float) -> None:
    if not isinstance(model, EarlyExitNetwork):
        raise CapabilityError(
            f"slowdown attacks need an EarlyExitNetwork, got {type(model).__name__}"
        )
    if model.n_exits < 2:
        raise ModelError("the network has no internal classifier to attack")
    if not (math.isfinite(eps) and eps >= 0):
        raise ParameterError(f"eps must be a finite number >= 0, got {eps}")
    if norm not in ("linf", "l2"):
        raise ParameterError(f"norm must be 'linf' or 'l2', got {norm!r}")
    if steps < 0:
        raise ParameterError(f"steps must be >= 0, got {steps}")
    if not 0.0 <= threshold <= 1.0:
        raise ParameterError(f"threshold must lie in [0, 1], got {threshold}")


def _inputs(model: EarlyExitNetwork, X: Any, clip: tuple[float, float] | None) -> torch.Tensor:
    x = model.as_tensor(X)
    if clip is not None and len(x) and (x.min() < clip[0] or x.max() > clip[1]):
        raise DataError(
            f"inputs lie outside the clip box {clip} (min {float(x.min()):.4g}, "
            f"max {float(x.max()):.4g}); scale them first or pass clip=None"
        )
    return x


def _counts(exits: np.ndarray, n_exits: int) -> list[int]:
    return [int(v) for v in np.bincount(exits, minlength=n_exits)]


def _result(
    attack: str,
    model: EarlyExitNetwork,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    y: Any,
    *,
    eps: float,
    norm: Norm,
    threshold: float,
    max_exit: int | None,
    latency: bool,
    queries: int,
    started: float,
    params: dict[str, Any],
) -> SlowdownResult:
    """Evaluate clean and perturbed inputs with early exit and assemble the result."""
    clean: EarlyExitOutput = model.infer(x, threshold, max_exit)
    adv: EarlyExitOutput = model.infer(x_adv, threshold, max_exit)
    labels = None if y is None else np.asarray(y, dtype=np.int64)
    if labels is not None and labels.shape != (len(x),):
        raise DataError(f"{len(x)} inputs but labels of shape {labels.shape}")
    last = model.n_exits - 1
    early = clean.exit_index < last
    slowed = early & (adv.exit_index > clean.exit_index)
    eff_clean, eff_adv = clean.efficacy, adv.efficacy
    result = SlowdownResult(
        attack=attack,
        n_points=len(x),
        success_rate=float(slowed.sum() / early.sum()) if early.any() else 0.0,
        queries=queries + len(x),
        budget=None,
        wall_time_s=time.perf_counter() - started,
        params=params,
        examples=[
            {
                "index": int(i),
                "exit_clean": int(clean.exit_index[i]),
                "exit_adversarial": int(adv.exit_index[i]),
            }
            for i in np.flatnonzero(slowed)[:5]
        ],
        norm=norm,
        eps=eps,
        threshold=threshold,
        efficacy_clean=eff_clean,
        efficacy_adversarial=eff_adv,
        efficacy_reduction=100.0 * (eff_clean - eff_adv) / eff_clean if eff_clean > 0 else 0.0,
        accuracy_clean=None if labels is None else clean.accuracy(labels),
        accuracy_adversarial=None if labels is None else adv.accuracy(labels),
        mean_compute_clean=clean.mean_compute,
        mean_compute_adversarial=adv.mean_compute,
        exits_clean=_counts(clean.exit_index, model.n_exits),
        exits_adversarial=_counts(adv.exit_index, model.n_exits),
        max_perturbation=float(norms(x_adv - x, norm).max()) if len(x) else 0.0,
        latency_clean=measure_latency(model, x, threshold, max_exit=max_exit) if latency else None,
        latency_adversarial=(
            measure_latency(model, x_adv, threshold, max_exit=max_exit) if latency else None
        ),
    )
    result._adversarial = x_adv.detach().cpu().numpy()
    return result


def _crafted(
    model: EarlyExitNetwork,
    x: torch.Tensor,
    *,
    eps: float,
    norm: Norm,
    steps: int,
    step_size: float | None,
    clip: tuple[float, float] | None,
    seed: int,
    batch_size: int,
) -> torch.Tensor:
    """:func:`~mlwarden.models.craft_slowdown` over ``x`` in batches, in eval mode.

    The batches are independent work items on the task runner, each with its own seed
    (:func:`item_seeds`), so the result does not depend on the engine or its worker count.
    Workers get the network (its weights travel as tensors) and one torch thread each, so
    that they do not fight over the cores; in this process the thread count is left alone.
    The training flag is restored afterwards.
    """
    batches = list(torch.split(x, batch_size))
    items = list(zip(batches, item_seeds(seed, len(batches)), strict=True))
    one_thread = len(items) > 1 and current_runner().workers > 1
    was_training = model.training
    model.eval()

    def craft(item: tuple[torch.Tensor, int]) -> torch.Tensor:
        batch, batch_seed = item
        threads = torch.get_num_threads()
        if one_thread:
            torch.set_num_threads(1)
        try:
            return craft_slowdown(
                model, batch, eps=eps, norm=norm, steps=steps, step_size=step_size, clip=clip,
                generator=torch.Generator().manual_seed(batch_seed),
            )  # fmt: skip
        finally:
            torch.set_num_threads(threads)

    try:
        parts = task_map(craft, items)
    finally:
        model.train(was_training)
    return torch.cat(parts) if parts else x.clone()


def deepsloth(
    model: EarlyExitNetwork,
    X: Any,
    y: Any = None,
    *,
    eps: float,
    threshold: float,
    norm: Norm = "linf",
    steps: int = 30,
    step_size: float | None = None,
    seed: int = 0,
    max_exit: int | None = None,
    clip: tuple[float, float] | None = (0.0, 1.0),
    batch_size: int = 512,
    latency: bool = True,
) -> SlowdownResult:
    """White-box DeepSloth: per-input PGD that makes every internal classifier unsure.

    Hong et al. (ICLR 2021). From a uniform random point of the ball, ``steps`` steps of
    ``step_size`` (sign steps for L-inf, normalised-gradient steps for L2) down
    :func:`slowdown_loss`, projected onto the ``eps`` ball and the ``clip`` box after each;
    each input keeps its lowest-loss iterate. Cost: ``steps + 1`` forward passes per input.

    Parameters
    ----------
    model
        The victim early-exit network (white-box).
    X, y
        Inputs (in the ``clip`` box) and, optionally, label indices for the accuracies.
    eps
        Radius of the perturbation ball in the chosen norm.
    threshold
        The victim's exit threshold ``q`` (see :func:`calibrate_threshold`).
    norm
        ``"linf"`` or ``"l2"``.
    steps, step_size
        PGD steps and their size; None: ``2.5 * eps / steps`` (Madry et al.).
    seed
        Seeds the random start.
    max_exit
        The victim's compute cap, if it has one (the evaluation honours it).
    clip
        Box the inputs stay in; None: unbounded.
    batch_size
        Inputs attacked together.
    latency
        Also time early-exit inference of each input alone, before and after.
    """
    _check(model, eps, norm, steps, threshold)
    started = time.perf_counter()
    x = _inputs(model, X, clip)
    x_adv = _crafted(
        model, x, eps=eps, norm=norm, steps=steps, step_size=step_size, clip=clip,
        seed=seed, batch_size=batch_size,
    )  # fmt: skip
    params = {"norm": norm, "eps": eps, "steps": steps, "step_size": step_size, "seed": seed,
              "threshold": threshold, "clip": clip}  # fmt: skip
    return _result(
        "deepsloth", model, x, x_adv, y, eps=eps, norm=norm, threshold=threshold,
        max_exit=max_exit, latency=latency, queries=len(x) * (steps + 1), started=started,
        params=params,
    )  # fmt: skip


def transfer_deepsloth(
    victim: EarlyExitNetwork,
    surrogate: EarlyExitNetwork,
    X: Any,
    y: Any = None,
    *,
    eps: float,
    threshold: float,
    norm: Norm = "linf",
    steps: int = 30,
    step_size: float | None = None,
    seed: int = 0,
    max_exit: int | None = None,
    clip: tuple[float, float] | None = (0.0, 1.0),
    batch_size: int = 512,
    latency: bool = True,
) -> SlowdownResult:
    """Black-box transfer: DeepSloth crafted on ``surrogate``, evaluated on ``victim``.

    The surrogate needs the victim's input shape and classes but may differ in weights,
    width or architecture (the paper trains it on the same data). ``threshold`` and
    ``max_exit`` are the victim's. No crafting query reaches the victim.
    """
    _check(victim, eps, norm, steps, threshold)
    _check(surrogate, eps, norm, steps, 0.5)
    if surrogate.input_shape != victim.input_shape:
        raise ModelError(
            f"the surrogate takes inputs of {surrogate.input_shape}, "
            f"the victim {victim.input_shape}"
        )
    started = time.perf_counter()
    x = _inputs(victim, X, clip)
    x_adv = _crafted(
        surrogate, _inputs(surrogate, X, clip), eps=eps, norm=norm, steps=steps,
        step_size=step_size, clip=clip, seed=seed, batch_size=batch_size,
    )  # fmt: skip
    params = {
        "norm": norm,
        "eps": eps,
        "steps": steps,
        "step_size": step_size,
        "seed": seed,
        "threshold": threshold,
        "clip": clip,
        "surrogate": type(surrogate).__name__,
    }
    return _result(
        "transfer_deepsloth", victim, x, x_adv.to(x.dtype), y, eps=eps, norm=norm,
        threshold=threshold, max_exit=max_exit, latency=latency, queries=0, started=started,
        params=params,
    )  # fmt: skip


def _project_delta(delta: torch.Tensor, eps: float, norm: Norm) -> torch.Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    length = float(torch.linalg.vector_norm(delta))
    return delta * min(1.0, eps / length) if length > 0 else delta


def universal_deepsloth(
    model: EarlyExitNetwork,
    X_train: Any,
    X: Any,
    y: Any = None,
    *,
    eps: float,
    threshold: float,
    norm: Norm = "linf",
    steps: int = 100,
    step_size: float | None = None,
    seed: int = 0,
    max_exit: int | None = None,
    clip: tuple[float, float] | None = (0.0, 1.0),
    batch_size: int = 256,
    latency: bool = True,
) -> SlowdownResult:
    """Universal DeepSloth: one perturbation for every input, optimised on ``X_train``.

    ``steps`` steps of projected gradient descent on the mean :func:`slowdown_loss` of
    ``clip(x + delta)`` over a minibatch of ``batch_size`` training inputs (reshuffled each
    pass), starting from ``delta = 0``, kept in the ``eps`` ball; then ``X`` (unseen inputs)
    are evaluated with ``clip(X + delta)``. The perturbation is in :attr:`SlowdownResult.
    perturbation`.
    """
    _check(model, eps, norm, steps, threshold)
    started = time.perf_counter()
    x_train = _inputs(model, X_train, clip)
    x = _inputs(model, X, clip)
    if len(x_train) == 0:
        raise DataError("universal_deepsloth needs training inputs")
    step = default_step(eps, steps) if step_size is None else step_size
    generator = torch.Generator().manual_seed(seed)
    delta = torch.zeros(model.input_shape, dtype=x.dtype)
    order, at, queries = torch.randperm(len(x_train), generator=generator), 0, 0
    was_training = model.training
    model.eval()
    try:
        for _ in range(steps):
            if at >= len(order):
                order, at = torch.randperm(len(x_train), generator=generator), 0
            batch = x_train[order[at : at + batch_size]]
            at += batch_size
            d = delta.clone().requires_grad_(True)
            xb = batch + d
            if clip is not None:
                xb = xb.clamp(clip[0], clip[1])
            loss = slowdown_loss(model.forward_all(xb)).mean()
            (grad,) = torch.autograd.grad(loss, d)
            queries += len(batch)
            ascent = direction(grad[None], norm)[0]
            delta = _project_delta(delta - step * ascent, eps, norm)
    finally:
        model.train(was_training)
    x_adv = x + delta
    if clip is not None:
        x_adv = x_adv.clamp(clip[0], clip[1])
    params = {"norm": norm, "eps": eps, "steps": steps, "step_size": step_size, "seed": seed,
              "threshold": threshold, "clip": clip, "n_train": len(x_train)}  # fmt: skip
    result = _result(
        "universal_deepsloth", model, x, x_adv, y, eps=eps, norm=norm, threshold=threshold,
        max_exit=max_exit, latency=latency, queries=queries, started=started, params=params,
    )  # fmt: skip
    result._perturbation = delta.detach().cpu().numpy()
    return result


def random_slowdown(
    model: EarlyExitNetwork,
    X: Any,
    y: Any = None,
    *,
    eps: float,
    threshold: float,
    norm: Norm = "linf",
    seed: int = 0,
    max_exit: int | None = None,
    clip: tuple[float, float] | None = (0.0, 1.0),
    latency: bool = True,
) -> SlowdownResult:
    """Baseline: random noise of norm ``eps`` (random signs times ``eps`` for L-inf, a random
    direction of length ``eps`` for L2), then clipped; what any attack must beat."""
    _check(model, eps, norm, 0, threshold)
    started = time.perf_counter()
    x = _inputs(model, X, clip)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    if norm == "linf":
        delta = noise.sign() * eps
    else:
        delta = noise * (eps / norms(noise, "l2").clamp_min(1e-30)).view(-1, *[1] * (x.ndim - 1))
    x_adv = x + delta.to(x.dtype)
    if clip is not None:
        x_adv = x_adv.clamp(clip[0], clip[1])
    params = {"norm": norm, "eps": eps, "seed": seed, "threshold": threshold, "clip": clip}
    return _result(
        "random_slowdown", model, x, x_adv, y, eps=eps, norm=norm, threshold=threshold,
        max_exit=max_exit, latency=latency, queries=0, started=started, params=params,
    )  # fmt: skip
