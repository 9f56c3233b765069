"""Models: the adapter protocol, safe persistence, signing and the registry."""

from mlwarden.models._adapter import HasGradient, ModelAdapter, SklearnAdapter
from mlwarden.models._charlm import (
    DEFAULT_VOCAB,
    CharLM,
    CharLMConfig,
    load_char_lm,
    save_char_lm,
    train_char_lm,
)
from mlwarden.models._hardening import HardenedModel, HardenedOutput, OutputHardening, OutputMode
from mlwarden.models._onnx import OnnxAdapter
from mlwarden.models._persist import MEDIA_TYPE, TRUSTED_TYPES, dumps_model, loads_model
from mlwarden.models._registry import (
    LANGUAGE_MODEL_MEDIA_TYPE,
    Manifest,
    ModelRegistry,
    ModelVersion,
)
from mlwarden.models._signing import Signer, load_public_key, verify_signature
from mlwarden.models._torch import (
    DigitsSplit,
    TorchAdapter,
    load_digits_split,
    train_digits_model,
)

__all__ = [
    "DEFAULT_VOCAB",
    "LANGUAGE_MODEL_MEDIA_TYPE",
    "MEDIA_TYPE",
    "TRUSTED_TYPES",
    "CharLM",
    "CharLMConfig",
    "DigitsSplit",
    "HardenedModel",
    "HardenedOutput",
    "HasGradient",
    "Manifest",
    "ModelAdapter",
    "ModelRegistry",
    "ModelVersion",
    "OnnxAdapter",
    "OutputHardening",
    "OutputMode",
    "Signer",
    "SklearnAdapter",
    "TorchAdapter",
    "dumps_model",
    "load_char_lm",
    "load_digits_split",
    "load_public_key",
    "loads_model",
    "save_char_lm",
    "train_char_lm",
    "train_digits_model",
    "verify_signature",
]
