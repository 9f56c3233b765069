"""Torch modules saved as safetensors: weights as tensors, the config as JSON metadata.

Nothing executable is written or read (no pickle). Loading checks the format name and version,
validates the config, and refuses any tensor that is missing, unexpected, of the wrong shape or
dtype for the config, or not finite, before a module sees it.
"""

from __future__ import annotations

import json
import struct
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from mlwarden.errors import ModelError

if TYPE_CHECKING:
    import torch

C = TypeVar("C", bound=BaseModel)


def header(data: bytes) -> dict[str, Any]:
    """The JSON header of a safetensors blob (8-byte little-endian length, then JSON)."""
    if len(data) < 8:
        raise ModelError("not a safetensors file: shorter than its 8-byte header length")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise ModelError(f"not a safetensors file: header of {size} bytes overruns the data")
    try:
        parsed = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"not a safetensors file: unreadable header ({exc})") from exc
    if not isinstance(parsed, dict):
        raise ModelError("not a safetensors file: the header is not a JSON object")
    return parsed


def save_module(module: torch.nn.Module, config: BaseModel, fmt: str, version: int) -> bytes:
    """``module``'s weights and ``config`` as safetensors bytes, tagged with format and version."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    metadata = {"format": fmt, "format_version": str(version), "config": config.model_dump_json()}
    return bytes(save(tensors, metadata=metadata))


def read_config(data: bytes, fmt: str, version: int, model: type[C], what: str) -> C:
    """The validated config of a blob written by :func:`save_module` with ``fmt``."""
    meta = header(bytes(data)).get("__metadata__") or {}
    if meta.get("format") != fmt:
        raise ModelError(f"not a saved {what}: metadata format is {meta.get('format')!r}")
    if meta.get("format_version") != str(version):
        raise ModelError(
            f"{what} format version {meta.get('format_version')!r} is not supported "
            f"(this mlwarden reads version {version})"
        )
    try:
        return model.model_validate_json(meta.get("config", ""))
    except ValidationError as exc:
        raise ModelError(f"saved {what} has an invalid config: {exc}") from exc


def load_weights(data: bytes, module: torch.nn.Module, what: str) -> None:
    """Load the blob's tensors into ``module`` (built from its config) after checking them."""
    import torch
    from safetensors.torch import load

    try:
        tensors = load(bytes(data))
    except Exception as exc:  # safetensors raises its own error type for corrupt data
        raise ModelError(f"cannot read the {what} weights: {exc}") from exc
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ModelError(
            f"{what} tensors do not match its config: missing {missing}, unexpected {unexpected}"
        )
    for name, want in expected.items():
        got = tensors[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise ModelError(
                f"{what} tensor {name!r} is {tuple(got.shape)} {got.dtype}; the config needs "
                f"{tuple(want.shape)} {want.dtype}"
            )
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise ModelError(f"{what} tensor {name!r} holds NaN or infinite values")
    module.load_state_dict(tensors, strict=True)
