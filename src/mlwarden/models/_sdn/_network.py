"""The early-exit network: a backbone split into blocks, with exit heads, and its inference.

Compute accounting: the cost of each block and head is counted once, at construction, as the
multiply-adds (MACs) of its convolution and linear layers on one example of ``input_shape``
(``out_elements * in_channels / groups * kernel_elements`` for a convolution,
``out_features * in_features`` for a linear layer), from forward hooks on a dry run. Pooling,
activations and other element-wise work are not counted (they are a few percent of a CNN);
pass ``block_costs`` and ``head_costs`` to the constructor for layers the hooks do not see.
An input leaving at exit ``k`` has run the blocks up to that exit and every head up to and
including ``k``; its compute fraction is that cost over the cost of running to the final exit
(all blocks and all heads), so it lies in (0, 1] and is 1 at the final exit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from mlwarden.errors import DataError, ModelError, ParameterError
from mlwarden.models._sdn._calibration import efficacy

__all__ = ["EarlyExitNetwork", "EarlyExitOutput", "ExitHead", "SDNConfig", "digits_sdn"]

Pooling = Literal["avg", "max", "mixed"]


class ExitHead(nn.Module):
    """An internal classifier: adaptive pooling to ``pool_size`` per spatial axis, then linear.

    ``"mixed"`` is the SDN paper's mixed pooling, ``a * max + (1 - a) * avg`` with a learned
    ``a = sigmoid(w)`` (0.5 at initialisation). ``spatial_dims`` is the number of spatial axes
    of the features: 0 for ``(n, channels)`` (no pooling), 1 for ``(n, c, length)``, 2 for
    ``(n, c, h, w)``.
    """

    def __init__(
        self,
        channels: int,
        n_classes: int,
        *,
        pooling: Pooling = "mixed",
        pool_size: int = 1,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        if pooling not in ("avg", "max", "mixed"):
            raise ParameterError(f"pooling must be 'avg', 'max' or 'mixed', got {pooling!r}")
        if channels < 1 or n_classes < 2 or pool_size < 1 or spatial_dims not in (0, 1, 2):
            raise ParameterError("need channels, pool_size >= 1, n_classes >= 2, spatial_dims 0-2")
        self.pooling, self.pool_size, self.spatial_dims = pooling, pool_size, spatial_dims
        self.mix = nn.Parameter(torch.zeros(())) if pooling == "mixed" else None
        self.linear = nn.Linear(channels * pool_size**spatial_dims, n_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of features."""
        if h.ndim != self.spatial_dims + 2:
            raise DataError(
                f"this head takes {self.spatial_dims + 2}-d features, got {tuple(h.shape)}"
            )
        if self.spatial_dims == 0:
            out0: torch.Tensor = self.linear(h)
            return out0
        if self.spatial_dims == 1:
            avg = F.adaptive_avg_pool1d(h, self.pool_size)
            mx = F.adaptive_max_pool1d(h, self.pool_size)
        else:
            avg = F.adaptive_avg_pool2d(h, self.pool_size)
            mx = F.adaptive_max_pool2d(h, self.pool_size)
        if self.pooling == "avg":
            pooled = avg
        elif self.pooling == "max":
            pooled = mx
        else:
            assert self.mix is not None
            a = torch.sigmoid(self.mix)
            pooled = a * mx + (1 - a) * avg
        out: torch.Tensor = self.linear(pooled.flatten(1))
        return out


def _count_macs(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Output of ``module`` on ``x`` (one example) and the MACs of its conv and linear layers."""
    total = [0]

    def hook(layer: nn.Module, inputs: tuple[Any, ...], out: Any) -> None:
        if isinstance(out, torch.Tensor):
            per_out = 0
            if isinstance(layer, nn.modules.conv._ConvNd):
                per_out = layer.in_channels // layer.groups * math.prod(layer.kernel_size)
            elif isinstance(layer, nn.Linear):
                per_out = layer.in_features
            total[0] += per_out * out[0].numel()

    handles = [m.register_forward_hook(hook) for m in module.modules()]
    try:
        out = module(x)
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(out, torch.Tensor):
        raise ModelError(f"a block returned {type(out).__name__}; blocks must return a tensor")
    return out, total[0]


class EarlyExitNetwork(nn.Module):
    """A backbone split into blocks, with an internal classifier after some of them.

    ``heads[i]`` is the exit after ``blocks[i]`` (None: no exit there); the last block must
    have one, the final classifier. ``forward`` returns the final logits, so the network is
    also an ordinary classifier (for example inside a ``TorchAdapter``).

    Parameters
    ----------
    blocks
        Modules applied in sequence to the input.
    heads
        One entry per block: the exit head after it, or None.
    input_shape
        Shape of one example (without the batch axis), used to count each part's MACs.
    block_costs, head_costs
        Costs (any unit) per block and per exit head, overriding the counted MACs.
    config
        How :func:`digits_sdn` built it (needed by :func:`save_sdn`); None otherwise.
    """

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        heads: Sequence[nn.Module | None],
        input_shape: Sequence[int],
        *,
        block_costs: Sequence[float] | None = None,
        head_costs: Sequence[float] | None = None,
        config: SDNConfig | None = None,
    ) -> None:
        super().__init__()
        if not blocks or len(heads) != len(blocks):
            raise ModelError(f"need one head entry per block: {len(blocks)} blocks, {len(heads)}")
        if heads[-1] is None:
            raise ModelError("the last block needs a head: it is the final classifier")
        self.blocks = nn.ModuleList(blocks)
        self.heads = nn.ModuleList([h for h in heads if h is not None])
        self.exit_blocks: tuple[int, ...] = tuple(i for i, h in enumerate(heads) if h is not None)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.config = config
        counted_blocks, counted_heads = self._dry_run()
        costs_b = [float(c) for c in (block_costs or counted_blocks)]
        costs_h = [float(c) for c in (head_costs or counted_heads)]
        if len(costs_b) != len(self.blocks) or len(costs_h) != len(self.heads):
            raise ModelError("block_costs needs one cost per block, head_costs one per head")
        if any(c < 0 or not math.isfinite(c) for c in costs_b + costs_h):
            raise ModelError("costs must be finite and non-negative")
        self.block_costs, self.head_costs = tuple(costs_b), tuple(costs_h)
        cumulative = []
        for k, b in enumerate(self.exit_blocks):
            cumulative.append(sum(costs_b[: b + 1]) + sum(costs_h[: k + 1]))
        if cumulative[-1] <= 0:
            raise ModelError("the full network's cost is zero; pass block_costs")
        self.exit_costs: tuple[float, ...] = tuple(cumulative)
        self.exit_fractions: tuple[float, ...] = tuple(c / cumulative[-1] for c in cumulative)

    @classmethod
    def from_blocks(
        cls,
        blocks: Sequence[nn.Module],
        input_shape: Sequence[int],
        n_classes: int,
        *,
        exits: Sequence[int] | None = None,
        pooling: Pooling = "mixed",
        pool_size: int = 1,
    ) -> EarlyExitNetwork:
        """Any backbone split into ``blocks``, with an :class:`ExitHead` after each of ``exits``.

        ``exits`` are block indices (None: every block); the last block always gets the final
        head. Head widths come from the channel axis of each block's output on a zero input.
        """
        chosen = set(range(len(blocks)) if exits is None else exits) | {len(blocks) - 1}
        if any(not 0 <= i < len(blocks) for i in chosen):
            raise ModelError(f"exits must be block indices 0..{len(blocks) - 1}, got {exits}")
        h = torch.zeros((1, *input_shape))
        heads: list[nn.Module | None] = []
        with torch.no_grad():
            for i, block in enumerate(blocks):
                h = block(h)
                if h.ndim not in (2, 3, 4):
                    raise ModelError(f"block {i} returned {h.ndim}-d features; need 2, 3 or 4")
                head = ExitHead(
                    int(h.shape[1]), n_classes,
                    pooling=pooling, pool_size=pool_size, spatial_dims=h.ndim - 2,
                )  # fmt: skip
                heads.append(head if i in chosen else None)
        return cls(blocks, heads, input_shape)

    def _dry_run(self) -> tuple[list[int], list[int]]:
        """MACs of each block and head on one zero example."""
        first = next(iter(self.parameters()), None)
        dtype = first.dtype if first is not None else torch.float32
        h = torch.zeros((1, *self.input_shape), dtype=dtype)
        block_macs, head_macs = [], []
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                k = 0
                for i, block in enumerate(self.blocks):
                    h, macs = _count_macs(block, h)
                    block_macs.append(macs)
                    if i in self.exit_blocks:
                        _, macs = _count_macs(self.heads[k], h)
                        head_macs.append(macs)
                        k += 1
        except (RuntimeError, ValueError) as exc:
            raise ModelError(
                f"the blocks do not run on input shape {self.input_shape}: {exc}"
            ) from exc
        finally:
            self.train(was_training)
        return block_macs, head_macs

    @property
    def n_exits(self) -> int:
        """Number of exits, the final classifier included."""
        return len(self.heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The final classifier's logits."""
        for block in self.blocks:
            x = block(x)
        out: torch.Tensor = self.heads[-1](x)
        return out

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every exit, in order (the final classifier last)."""
        outs: list[torch.Tensor] = []
        k = 0
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.exit_blocks:
                outs.append(self.heads[k](x))
                k += 1
        return outs

    def as_tensor(self, X: Any) -> torch.Tensor:
        """Inputs as a tensor of the network's dtype, checked against ``input_shape``."""
        first = next(iter(self.parameters()), None)
        dtype = first.dtype if first is not None else torch.float32
        x = X.detach() if isinstance(X, torch.Tensor) else torch.as_tensor(np.array(X))
        x = x.to(dtype)
        if tuple(x.shape[1:]) != self.input_shape:
            raise DataError(f"expected inputs of shape (n, {self.input_shape}), got {x.shape}")
        if not bool(torch.isfinite(x).all()):
            raise DataError("inputs contain NaN or infinite values")
        return x

    def _run(
        self, x: torch.Tensor, threshold: float, max_exit: int | None
    ) -> tuple[torch.Tensor, ...]:
        """True early exit: each block runs only on the rows still in flight."""
        n, last = len(x), self.n_exits - 1
        stop = last if max_exit is None else max_exit
        exit_at = torch.full((n,), stop, dtype=torch.long)
        answer = torch.full((n,), stop, dtype=torch.long)
        capped = torch.zeros(n, dtype=torch.bool)
        probs: torch.Tensor | None = None
        best_conf = torch.full((n,), -1.0, dtype=torch.float64)
        best_probs: torch.Tensor | None = None
        best_exit = torch.zeros(n, dtype=torch.long)
        rows = torch.arange(n)
        h, k = x, 0
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i not in self.exit_blocks:
                continue
            p = torch.softmax(self.heads[k](h), dim=1)
            if probs is None:
                probs = p.new_zeros((n, p.shape[1]))
                best_probs = p.new_zeros((n, p.shape[1]))
            assert best_probs is not None
            conf = p.max(dim=1).values
            better = conf.double() > best_conf[rows]
            best_conf[rows[better]] = conf[better].double()
            best_probs[rows[better]] = p[better]
            best_exit[rows[better]] = k
            confident = conf >= threshold
            done = confident | (k >= stop)
            hit = rows[done]
            exit_at[hit] = k
            if k == last or k < stop:  # confident, or the final classifier answers
                probs[hit], answer[hit] = p[done], k
            else:  # the cap: confident rows answer here, the rest from their best exit
                cap = done & ~confident
                probs[rows[confident]], answer[rows[confident]] = p[confident], k
                probs[rows[cap]] = best_probs[rows[cap]]
                answer[rows[cap]], capped[rows[cap]] = best_exit[rows[cap]], True
            rows, h, k = rows[~done], h[~done], k + 1
            if len(rows) == 0:
                break
        assert probs is not None
        return probs, exit_at, answer, capped

    def infer(self, X: Any, threshold: float, max_exit: int | None = None) -> EarlyExitOutput:
        """Per-input early-exit inference (in eval mode, without gradients).

        Each input leaves at the first exit whose largest softmax probability is at least
        ``threshold``, or at the final exit. With ``max_exit``, an input that reaches exit
        ``max_exit`` without being confident stops there and is answered by the most
        confident exit it has passed (``capped``).
        """
        if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise ParameterError(f"threshold must lie in [0, 1], got {threshold}")
        if max_exit is not None and not 0 <= max_exit < self.n_exits:
            raise ParameterError(f"max_exit must be an exit index 0..{self.n_exits - 1}")
        x = self.as_tensor(X)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                probs, exit_at, answer, capped = self._run(x, threshold, max_exit)
        finally:
            self.train(was_training)
        fractions = np.asarray(self.exit_fractions)[exit_at.numpy()]
        p = probs.double().numpy()
        return EarlyExitOutput(
            predictions=p.argmax(axis=1) if len(p) else np.zeros(0, dtype=np.int64),
            probabilities=p,
            exit_index=exit_at.numpy(),
            answer_exit=answer.numpy(),
            compute_fraction=fractions,
            capped=capped.numpy(),
            threshold=threshold,
        )


@dataclass(frozen=True)
class EarlyExitOutput:
    """What :meth:`EarlyExitNetwork.infer` decided for each input.

    ``exit_index`` is where computation stopped; ``answer_exit`` the exit whose softmax is
    returned (the same unless ``capped``); ``compute_fraction`` the cost spent over the cost of
    the full network (see the module docstring).
    """

    predictions: np.ndarray
    probabilities: np.ndarray
    exit_index: np.ndarray
    answer_exit: np.ndarray
    compute_fraction: np.ndarray
    capped: np.ndarray
    threshold: float

    @property
    def mean_compute(self) -> float:
        """Average compute fraction per input."""
        return float(self.compute_fraction.mean()) if len(self.compute_fraction) else 0.0

    @property
    def efficacy(self) -> float:
        """DeepSloth efficacy of these exits (:func:`efficacy`)."""
        return efficacy(self.compute_fraction)

    def accuracy(self, y: Any) -> float:
        """Fraction of inputs whose early-exit prediction equals the label index in ``y``."""
        labels = np.asarray(y)
        if labels.shape != self.predictions.shape:
            raise DataError(f"{len(self.predictions)} predictions but labels of {labels.shape}")
        return float((self.predictions == labels).mean()) if len(labels) else 0.0


class SDNConfig(BaseModel):
    """How :func:`digits_sdn` built a network; saved beside the weights."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["digits_cnn"] = "digits_cnn"
    width: int = Field(16, ge=1, le=512)
    n_classes: int = Field(10, ge=2)
    pooling: Pooling = "mixed"
    pool_size: int = Field(2, ge=1, le=8)
    seed: int = 0


def _digits_blocks(width: int) -> list[nn.Module]:
    w = width
    return [
        nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)),
            nn.Conv2d(1, w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1),
            nn.ReLU(),
        ),
        nn.Sequential(nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU()),
        nn.Sequential(nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
    ]


def digits_sdn(
    width: int = 16, *, pooling: Pooling = "mixed", pool_size: int = 2, seed: int = 0
) -> EarlyExitNetwork:
    """An untrained 4-block CNN for Digits (flat 64-pixel inputs) with an IC after each block.

    Blocks: two conv(w) | conv(2w) + max-pool | conv(2w) | conv(4w) + max-pool, each a 3x3
    convolution with ReLU; exits 0..2 are ICs (at about 17%, 50% and 67% of the compute),
    exit 3 the final classifier. ``seed`` fixes the initial weights (the global random state
    is left as it was). Train it with :func:`train_sdn`.
    """
    config = SDNConfig(width=width, n_classes=10, pooling=pooling, pool_size=pool_size, seed=seed)
    return _build(config)


def _build(config: SDNConfig) -> EarlyExitNetwork:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        blocks = _digits_blocks(config.width)
        channels = [config.width, 2 * config.width, 2 * config.width, 4 * config.width]
        heads: list[nn.Module | None] = [
            ExitHead(c, config.n_classes, pooling=config.pooling, pool_size=config.pool_size)
            for c in channels
        ]
    return EarlyExitNetwork(blocks, heads, (64,), config=config)
