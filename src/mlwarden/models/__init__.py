"""Models: the adapter protocol, safe persistence, signing and the registry."""

from mlwarden.models._adapter import HasGradient, ModelAdapter, SklearnAdapter
from mlwarden.models._persist import MEDIA_TYPE, TRUSTED_TYPES, dumps_model, loads_model
from mlwarden.models._registry import Manifest, ModelRegistry, ModelVersion
from mlwarden.models._signing import Signer, load_public_key, verify_signature

__all__ = [
    "MEDIA_TYPE",
    "TRUSTED_TYPES",
    "HasGradient",
    "Manifest",
    "ModelAdapter",
    "ModelRegistry",
    "ModelVersion",
    "Signer",
    "SklearnAdapter",
    "dumps_model",
    "load_public_key",
    "loads_model",
    "verify_signature",
]
