"""Shallow-Deep Networks: a backbone with internal classifiers that lets inputs exit early.

An :class:`EarlyExitNetwork` runs a backbone split into blocks; after chosen blocks an internal
classifier (IC) head, pooling then a linear layer, gives logits, and the head after the last
block is the final classifier [1]_. At inference (:meth:`EarlyExitNetwork.infer`) each input
stops at the first exit whose softmax confidence (largest probability) reaches the threshold
``q``, so easy inputs cost a fraction of the network; an optional compute cap (``max_exit``)
stops every input at a given exit at the latest. DeepSloth [2]_ (:mod:`mlwarden.attacks`)
attacks exactly this saving.

Wrapping any backbone: split its ``forward`` into a list of ``nn.Module`` blocks applied in
sequence (``nn.Sequential`` pieces, or small modules around the original stages), then call
:meth:`EarlyExitNetwork.from_blocks` with the per-example input shape and the indices of the
blocks to put an IC after; the heads are sized from a dry run. Pass your own heads to the
constructor for anything else (the last block's head is the final classifier).

Compute accounting: the cost of each block and head is counted once, at construction, as the
multiply-adds (MACs) of its convolution and linear layers on one example of ``input_shape``
(``out_elements * in_channels / groups * kernel_elements`` for a convolution,
``out_features * in_features`` for a linear layer), from forward hooks on a dry run. Pooling,
activations and other element-wise work are not counted (they are a few percent of a CNN);
pass ``block_costs`` and ``head_costs`` to the constructor for layers the hooks do not see.
An input leaving at exit ``k`` has run the blocks up to that exit and every head up to and
including ``k``; its compute fraction is that cost over the cost of running to the final exit
(all blocks and all heads), so it lies in (0, 1] and is 1 at the final exit.

Efficacy (DeepSloth [2]_, section 3): the area under the curve of the fraction of inputs that
have exited (y) against the fraction of full compute spent (x), x from 0 to 1. Taken as the
exact step curve it equals ``1 - mean compute fraction`` (:func:`efficacy`): near 1 when every
input leaves at a cheap first IC, 0 when every input runs to the end.

Weights are saved with ``safetensors`` (nothing executable) and the :class:`SDNConfig` as JSON
metadata; only networks built by :func:`digits_sdn` carry a config and can be saved.

torch is the optional ``torch`` extra (``pip install 'mlwarden[torch]'``); this module imports
it at import time, so the package should expose it lazily.

References
----------
.. [1] Y. Kaya, S. Hong, T. Dumitras, "Shallow-Deep Networks: Understanding and Mitigating
   Network Overthinking", ICML 2019.
.. [2] S. Hong, Y. Kaya, I.-V. Modoranu, T. Dumitras, "A Panda? No, It's a Sloth: Slowdown
   Attacks on Adaptive Multi-Exit Neural Network Inference", ICLR 2021.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlwarden.errors import DataError, ModelError, ParameterError
from mlwarden.models._safetensors import load_weights, read_config, save_module

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ModelError(
        "early-exit networks need PyTorch, which is not installed: pip install 'mlwarden[torch]'"
    ) from exc

__all__ = [
    "EarlyExitNetwork",
    "EarlyExitOutput",
    "ExitHead",
    "LatencyStats",
    "SDNConfig",
    "ThresholdCalibration",
    "calibrate_threshold",
    "digits_sdn",
    "efficacy",
    "load_sdn",
    "measure_latency",
    "save_sdn",
    "train_sdn",
]

Pooling = Literal["avg", "max", "mixed"]

#: Saved-model format name and version, written in the safetensors metadata.
FORMAT = "mlwarden.sdn"
FORMAT_VERSION = 1


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


class LatencyStats(BaseModel):
    """Wall-clock time of early-exit inference per input, at batch size 1, in milliseconds."""

    model_config = ConfigDict(defer_build=True)

    n: int
    mean_ms: float
    p50_ms: float
    p99_ms: float


def measure_latency(
    model: EarlyExitNetwork,
    X: Any,
    threshold: float,
    *,
    max_exit: int | None = None,
    warmup: int = 5,
) -> LatencyStats:
    """Time early-exit inference of each input alone (batch size 1) on this machine.

    The times depend on the machine, its load and torch's thread count; compare them only
    within one run.
    """
    x = model.as_tensor(X)
    if len(x) == 0:
        raise DataError("measure_latency needs at least one input")
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad():
            for i in range(min(warmup, len(x))):
                model._run(x[i : i + 1], threshold, max_exit)
            for i in range(len(x)):
                start = time.perf_counter()
                model._run(x[i : i + 1], threshold, max_exit)
                times.append((time.perf_counter() - start) * 1e3)
    finally:
        model.train(was_training)
    ordered = np.sort(times)
    return LatencyStats(
        n=len(times),
        mean_ms=statistics.fmean(times),
        p50_ms=float(np.percentile(ordered, 50)),
        p99_ms=float(np.percentile(ordered, 99)),
    )


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


def save_sdn(model: EarlyExitNetwork) -> bytes:
    """The network as safetensors bytes: weights as tensors, the config as JSON metadata.

    Raises
    ------
    ModelError
        The network was not built by :func:`digits_sdn`, so there is no config to rebuild it.
    """
    if model.config is None:
        raise ModelError("only networks built by digits_sdn carry a config and can be saved")
    return save_module(model, model.config, FORMAT, FORMAT_VERSION)


def load_sdn(data: bytes) -> EarlyExitNetwork:
    """A network from :func:`save_sdn` bytes, checked against its config; nothing unpickled.

    Raises
    ------
    ModelError
        Not a safetensors file of this format and version, an invalid config, or tensors that
        are missing, unexpected, or of the wrong shape or dtype for the config.
    """
    config = read_config(data, FORMAT, FORMAT_VERSION, SDNConfig, "SDN")
    model = _build(config)
    load_weights(data, model, "SDN")
    return model.eval()
