"""Models: the adapter protocol, safe persistence, signing and the registry."""

from mlwarden.models._adapter import HasGradient, ModelAdapter, SklearnAdapter
from mlwarden.models._onnx import OnnxAdapter
from mlwarden.models._persist import MEDIA_TYPE, TRUSTED_TYPES, dumps_model, loads_model
from mlwarden.models._registry import Manifest, ModelRegistry, ModelVersion
from mlwarden.models._signing import Signer, load_public_key, verify_signature
from mlwarden.models._torch import (
    DigitsSplit,
    TorchAdapter,
    load_digits_split,
    train_digits_model,
)

__all__ = [
    "MEDIA_TYPE",
    "TRUSTED_TYPES",
    "DigitsSplit",
    "HasGradient",
    "Manifest",
    "ModelAdapter",
    "ModelRegistry",
    "ModelVersion",
    "OnnxAdapter",
    "Signer",
    "SklearnAdapter",
    "TorchAdapter",
    "dumps_model",
    "load_digits_split",
    "load_public_key",
    "loads_model",
    "train_digits_model",
    "verify_signature",
]
