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

Modules: :mod:`._network` (the network, its heads and inference), :mod:`._calibration`
(efficacy and the exit threshold), :mod:`._latency`, :mod:`._training` and :mod:`._io`
(safetensors persistence).

torch is the optional ``torch`` extra (``pip install 'mlwarden[torch]'``); this package imports
it at import time, so :mod:`mlwarden.models` exposes it lazily.

References
----------
.. [1] Y. Kaya, S. Hong, T. Dumitras, "Shallow-Deep Networks: Understanding and Mitigating
   Network Overthinking", ICML 2019.
.. [2] S. Hong, Y. Kaya, I.-V. Modoranu, T. Dumitras, "A Panda? No, It's a Sloth: Slowdown
   Attacks on Adaptive Multi-Exit Neural Network Inference", ICLR 2021.
"""

from mlwarden.errors import ModelError

try:
    import torch  # noqa: F401  (the submodules import it; fail here with the install hint)
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ModelError(
        "early-exit networks need PyTorch, which is not installed: pip install 'mlwarden[torch]'"
    ) from exc

from mlwarden.models._sdn._calibration import (
    ThresholdCalibration,
    calibrate_threshold,
    efficacy,
)
from mlwarden.models._sdn._io import load_sdn, save_sdn
from mlwarden.models._sdn._latency import LatencyStats, measure_latency
from mlwarden.models._sdn._network import (
    EarlyExitNetwork,
    EarlyExitOutput,
    ExitHead,
    SDNConfig,
    digits_sdn,
)
from mlwarden.models._sdn._training import train_sdn

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
