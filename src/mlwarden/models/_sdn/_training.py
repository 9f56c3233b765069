"""Training every exit of an early-exit network, optionally against DeepSloth inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from mlwarden.errors import DataError, ParameterError

if TYPE_CHECKING:
    from mlwarden.models._sdn._network import EarlyExitNetwork

__all__ = ["train_sdn"]


def train_sdn(
    model: EarlyExitNetwork,
    X: Any = None,
    y: Any = None,
    *,
    epochs: int = 30,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
    mode: Literal["scratch", "ic_only"] = "scratch",
    adversarial_eps: float | None = None,
    adversarial_norm: Literal["linf", "l2"] = "linf",
    adversarial_steps: int = 5,
) -> EarlyExitNetwork:
    """Train every exit jointly, deterministically given ``seed``; returns the model in eval mode.

    ``"scratch"`` is the SDN paper's from-scratch training: the loss is
    ``sum_k tau_k * CE(exit_k)``, the final exit's weight 1 and IC ``k``'s weight rising
    linearly over the epochs from 0.01 to its relative depth (block index + 1 over the number
    of blocks). ``"ic_only"`` freezes the backbone and the final head (a pre-trained network)
    and trains the ICs with equal weights.

    With ``adversarial_eps`` (the measured defence), each batch is doubled with DeepSloth
    examples (``adversarial_steps`` PGD steps of the slowdown loss, random start, in the
    ``adversarial_norm`` ball) crafted against the current weights and labelled with their
    true labels, so the ICs learn to stay confident on them.

    Parameters
    ----------
    X, y
        Inputs of ``model.input_shape`` and label indices; None: the training part of
        :func:`~mlwarden.models.load_digits_split` (for :func:`digits_sdn` networks).
    """
    if (X is None) != (y is None):
        raise ParameterError("give both X and y, or neither")
    if X is None:
        split = _digits()
        X, y = split.X_train, split.y_train
    x_all = model.as_tensor(X)
    t_all = torch.as_tensor(np.asarray(y, dtype=np.int64))
    if t_all.shape != (len(x_all),):
        raise DataError(f"{len(x_all)} inputs but labels of shape {tuple(t_all.shape)}")
    if epochs < 0 or batch_size < 1 or lr <= 0:
        raise ParameterError("epochs must be >= 0, batch_size >= 1 and lr > 0")
    if mode not in ("scratch", "ic_only"):
        raise ParameterError(f"mode must be 'scratch' or 'ic_only', got {mode!r}")
    from mlwarden.models._slowdown_loss import craft_slowdown  # the defence trains on the attack

    n_blocks, k_last = len(model.blocks), model.n_exits - 1
    depth = [(b + 1) / n_blocks for b in model.exit_blocks]
    if mode == "ic_only":
        params = [p for h in model.heads[:-1] for p in h.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
    else:
        params = list(model.parameters())
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            generator = torch.Generator().manual_seed(seed)
            optimiser = torch.optim.Adam(params, lr=lr)
            for epoch in range(epochs):
                ramp = epoch / max(epochs - 1, 1)
                if mode == "scratch":
                    tau = [0.01 + (d - 0.01) * ramp for d in depth[:-1]] + [1.0]
                else:
                    tau = [1.0] * k_last + [0.0]
                order = torch.randperm(len(x_all), generator=generator)
                for batch in torch.split(order, batch_size):
                    inputs, targets = x_all[batch], t_all[batch]
                    if adversarial_eps is not None:
                        model.eval()
                        adv = craft_slowdown(
                            model, inputs, eps=adversarial_eps, norm=adversarial_norm,
                            steps=adversarial_steps, step_size=None, clip=(0.0, 1.0),
                            generator=generator,
                        )  # fmt: skip
                        inputs, targets = torch.cat([inputs, adv]), torch.cat([targets, targets])
                    model.train(mode == "scratch")
                    outs = model.forward_all(inputs)
                    loss = sum(
                        (w * F.cross_entropy(o, targets) for w, o in zip(tau, outs, strict=True)),
                        start=torch.zeros(()),
                    )
                    optimiser.zero_grad()
                    torch.autograd.backward(loss)
                    optimiser.step()
        finally:
            torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
            for p in model.parameters():
                p.requires_grad_(True)
    return model.eval()


def _digits() -> Any:
    from mlwarden.models._torch import load_digits_split

    return load_digits_split()
