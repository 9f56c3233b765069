"""Saving and loading early-exit networks as safetensors, with nothing executable.

Weights are saved with ``safetensors`` and the :class:`SDNConfig` as JSON metadata; only
networks built by :func:`digits_sdn` carry a config and can be saved.
"""

from __future__ import annotations

from mlwarden.errors import ModelError
from mlwarden.models._safetensors import load_weights, read_config, save_module
from mlwarden.models._sdn._network import EarlyExitNetwork, SDNConfig, _build

__all__ = ["load_sdn", "save_sdn"]

#: Saved-model format name and version, written in the safetensors metadata.
FORMAT = "mlwarden.sdn"
FORMAT_VERSION = 1


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
