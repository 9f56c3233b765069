"""Models: the adapter protocol, safe persistence, signing and the registry."""

from typing import TYPE_CHECKING, Any

from mlwarden.models._adapter import HasGradient, ModelAdapter, SklearnAdapter
from mlwarden.models._charlm import (
    DEFAULT_VOCAB,
    CharLM,
    CharLMConfig,
    load_char_lm,
    save_char_lm,
    train_char_lm,
)
from mlwarden.models._history import model_history_problems
from mlwarden.models._manifest import (
    MANIFEST_FORMAT,
    MANIFEST_GENESIS,
    Manifest,
    ModelVersion,
)
from mlwarden.models._onnx import OnnxAdapter
from mlwarden.models._output_hardening import (
    HardenedModel,
    HardenedOutput,
    OutputHardening,
    OutputMode,
    harden_probabilities,
    hardened_outputs,
)
from mlwarden.models._persist import MEDIA_TYPE, TRUSTED_TYPES, dumps_model, loads_model
from mlwarden.models._recording import RecordingModel
from mlwarden.models._register import next_manifest_link, version_record
from mlwarden.models._registry import (
    EARLY_EXIT_MEDIA_TYPE,
    LANGUAGE_MODEL_MEDIA_TYPE,
    ModelRegistry,
)
from mlwarden.models._signing import Signer, TrustPolicy
from mlwarden.models._torch import (
    DIGITS_INPUT_SCALE,
    DigitsSplit,
    TorchAdapter,
    load_digits_split,
    require_torch,
    train_digits_model,
)

__all__ = [
    "DEFAULT_VOCAB",
    "DP_TRUSTED_TYPES",
    "LANGUAGE_MODEL_MEDIA_TYPE",
    "MANIFEST_FORMAT",
    "MANIFEST_GENESIS",
    "MEDIA_TYPE",
    "TRUSTED_TYPES",
    "CharLM",
    "CharLMConfig",
    "DPSGDClassifier",
    "DigitsSplit",
    "EarlyExitNetwork",
    "EarlyExitOutput",
    "ExitHead",
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
    "RecordingModel",
    "SDNConfig",
    "Signer",
    "SklearnAdapter",
    "ThresholdCalibration",
    "TorchAdapter",
    "TrustPolicy",
    "calibrate_threshold",
    "claimed_delta",
    "claimed_epsilon",
    "default_delta",
    "digits_sdn",
    "dumps_model",
    "efficacy",
    "load_char_lm",
    "load_digits_split",
    "load_sdn",
    "loads_model",
    "measure_latency",
    "model_history_problems",
    "next_manifest_link",
    "save_char_lm",
    "save_sdn",
    "train_char_lm",
    "train_digits_model",
    "train_sdn",
    "version_record",
]

if TYPE_CHECKING:  # the lazy names below, for type checkers
    from mlwarden.models._dp import (
        DP_TRUSTED_TYPES,
        DPSGDClassifier,
        claimed_delta,
        claimed_epsilon,
        default_delta,
    )
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
    from mlwarden.models._slowdown_loss import craft_slowdown, slowdown_loss

# DP-SGD subclasses scikit-learn's BaseEstimator: imported on first use, so that importing
# mlwarden stays free of scikit-learn.
# Early-exit networks import torch: also on first use.
_LAZY = {
    "_dp": {"DP_TRUSTED_TYPES", "DPSGDClassifier", "claimed_delta", "claimed_epsilon",
            "default_delta"},
    "_sdn._network": {"EarlyExitNetwork", "EarlyExitOutput", "ExitHead", "SDNConfig",
                      "digits_sdn"},
    "_sdn._calibration": {"ThresholdCalibration", "calibrate_threshold", "efficacy"},
    "_sdn._latency": {"LatencyStats", "measure_latency"},
    "_sdn._training": {"train_sdn"},
    "_sdn._io": {"load_sdn", "save_sdn"},
    "_slowdown_loss": {"craft_slowdown", "slowdown_loss"},
}  # fmt: skip


def __getattr__(name: str) -> Any:
    import importlib

    for module, names in _LAZY.items():
        if name in names:
            return getattr(importlib.import_module(f"mlwarden.models.{module}"), name)
    raise AttributeError(f"module 'mlwarden.models' has no attribute {name!r}")


# Model-file scanning (static: nothing a file holds is imported or run) and the restricted
# unpickler that loads only allowlisted globals.
# Bringing a model file in: scan, load through a safe path, convert (models/_import.py).
from mlwarden.models._import import (  # noqa: E402
    ONNX_MEDIA_TYPE,
    STATE_DICT_MEDIA_TYPE,
    ImportedModel,
    adapter_for,
    fitted_columns,
    import_model_file,
    imported_trusted_types,
    model_file_adapter,
    refusal,
)
from mlwarden.models._scan import scan_file, scan_paths  # noqa: E402
from mlwarden.models._scan_allowlist import allowed_globals  # noqa: E402
from mlwarden.models._scan_report import (  # noqa: E402
    Finding,
    ScanPolicy,
    ScanReport,
    load_scan_policy,
)
from mlwarden.models._scan_sarif import scan_sarif  # noqa: E402
from mlwarden.models._unpickle import restricted_load  # noqa: E402

__all__ += [
    "Finding",
    "ScanPolicy",
    "ScanReport",
    "allowed_globals",
    "load_scan_policy",
    "restricted_load",
    "scan_file",
    "scan_paths",
    "scan_sarif",
]

# Provenance others can verify: an in-toto SLSA statement and an OpenSSF model-signing signature.
from mlwarden.models._provenance_export import (  # noqa: E402
    ExportedModel,
    Provenance,
    export_version,
    read_provenance,
)

__all__ += ["ExportedModel", "Provenance", "export_version", "read_provenance"]

__all__ += [
    "ONNX_MEDIA_TYPE",
    "STATE_DICT_MEDIA_TYPE",
    "ImportedModel",
    "adapter_for",
    "fitted_columns",
    "import_model_file",
    "imported_trusted_types",
    "model_file_adapter",
    "refusal",
]

# Torch classifiers saved with their architecture (servable and auditable, no pickle).
from mlwarden.models._torch_classifier import (  # noqa: E402
    TORCH_MEDIA_TYPE,
    TorchClassifierConfig,
    load_torch_classifier,
    save_torch_classifier,
)

__all__ += [
    "TORCH_MEDIA_TYPE",
    "TorchClassifierConfig",
    "load_torch_classifier",
    "save_torch_classifier",
]

__all__ += [
    "DIGITS_INPUT_SCALE",
    "EARLY_EXIT_MEDIA_TYPE",
    "LatencyStats",
    "craft_slowdown",
    "harden_probabilities",
    "hardened_outputs",
    "require_torch",
    "slowdown_loss",
]
