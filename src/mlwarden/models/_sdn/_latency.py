"""Wall-clock latency of early-exit inference, one input at a time."""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from mlwarden.errors import DataError

if TYPE_CHECKING:
    from mlwarden.models._sdn._network import EarlyExitNetwork

__all__ = ["LatencyStats", "measure_latency"]


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
