"""Bring your own model: scan a model file, then load it only through a safe path.

The scanner decides first; nothing from an unsafe file is loaded. Then each format has one
loader that cannot run code: scikit-learn pickles and joblib files go through
``restricted_load`` (allowlisted globals only) and are re-saved as skops; torch checkpoints go
through ``torch.load(weights_only=True)`` and their state dict is re-saved as safetensors;
ONNX files are checked and kept as they are.

A torch state dict holds weights without the code of the network, so mlwarden registers it
(weights, signed) but cannot run it: auditing one fails with a line saying to export ONNX. A
file saved by ``save_torch_classifier`` carries its architecture too, and is kept as it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mlwarden.errors import CapabilityError, DataError, ModelError, UntrustedArtifactError
from mlwarden.models._adapter import ModelAdapter, SklearnAdapter
from mlwarden.models._persist import MEDIA_TYPE, TRUSTED_TYPES, dumps_model, loads_model
from mlwarden.models._scan import scan_file
from mlwarden.models._scan_allowlist import allowed_globals, dangerous_reason
from mlwarden.models._scan_report import ScanPolicy, ScanReport
from mlwarden.models._torch_classifier import (
    TORCH_MEDIA_TYPE,
    is_torch_classifier,
    load_torch_classifier,
    torch_classifier_adapter,
)
from mlwarden.models._unpickle import restricted_load

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch

#: Media type of an imported ONNX model, registered byte for byte.
ONNX_MEDIA_TYPE = "application/onnx"
#: Media type of an imported torch state dict: its tensors as safetensors, no architecture.
STATE_DICT_MEDIA_TYPE = "application/vnd.mlwarden.state-dict+safetensors"

ImportKind = Literal["sklearn-pickle", "skops", "torch", "onnx"]

#: Where a training checkpoint keeps the model's weights (the first one found is taken).
_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")
_EXPORT_HINT = (
    "export a state dict (torch.save(model.state_dict(), path)), TorchScript or ONNX "
    "(torch.onnx.export) and import that"
)
_AUDIT_HINT = (
    "a torch state dict holds weights without the network's code, so mlwarden cannot run it; "
    "export the model to ONNX (torch.onnx.export) and use the .onnx file"
)


def imported_trusted_types(extra: Iterable[str] = ()) -> frozenset[str]:
    """The types an imported skops model may hold: mlwarden's own list, the reviewed pickle
    allowlist (what ``restricted_load`` already agreed to build) and ``extra`` (a scan
    policy's ``allow_globals``), never a known-dangerous callable."""
    named = frozenset(n for n in extra if dangerous_reason(*n.rsplit(".", 1)) is None)
    return TRUSTED_TYPES | allowed_globals() | named


@dataclass(frozen=True)
class ImportedModel:
    """A scanned model file, converted to the form mlwarden registers.

    ``data`` is what gets registered (skops, safetensors or ONNX bytes, as ``media_type``
    says); ``source_sha256`` is the original file's hash and ``report`` its scan.
    ``estimator`` is the loaded scikit-learn model (None for other kinds); ``allow_globals``
    the scan policy's additions it was loaded under (loading it again needs them).
    """

    kind: ImportKind
    data: bytes
    media_type: str
    source_sha256: str
    report: ScanReport
    estimator: Any = None
    details: dict[str, Any] = field(default_factory=dict)
    allow_globals: tuple[str, ...] = ()

    def info(self) -> dict[str, Any]:
        """What the import recorded, as JSON-ready data (kept beside the registered model)."""
        return {
            "kind": self.kind,
            "media_type": self.media_type,
            "source": Path(self.report.file).name,
            "source_sha256": self.source_sha256,
            "format": self.report.format,
            "allow_globals": sorted(self.allow_globals),
            **self.details,
        }


def _findings_line(report: ScanReport, limit: int = 3) -> str:
    unsafe = [f for f in report.findings if f.unsafe]
    shown = "; ".join(
        f"{f.severity} {f.rule}: {f.member + ': ' if f.member else ''}{f.message}"
        for f in unsafe[:limit]
    )
    more = (
        f" (and {len(unsafe) - limit} more: mlwarden scan shows all)" if len(unsafe) > limit else ""
    )
    return f"{len(unsafe)} finding(s): {shown}{more}"


def _is_torch_module(report: ScanReport) -> bool:
    """Unsafe only for classes off the allowlist, in a file that rebuilds torch tensors: a
    whole pickled ``nn.Module`` (torch.save(model)) rather than an attack."""
    unsafe = [f for f in report.findings if f.unsafe]
    return (
        bool(unsafe)
        and all(f.rule == "global-not-allowed" for f in unsafe)
        and any(g.startswith("torch._utils._rebuild") for g in report.globals)
        and any((f.global_name or "").startswith("torch.nn.") for f in unsafe)
    )


def refusal(report: ScanReport) -> str:
    """Why a file the scanner found unsafe is not loaded, in one line."""
    if _is_torch_module(report):
        return (
            f"{report.file} is a whole pickled torch module: loading it would import and run "
            f"its classes' code; {_EXPORT_HINT}. {_findings_line(report)}"
        )
    return f"{report.file} is unsafe, not loaded: {_findings_line(report)}"


def _kind(report: ScanReport) -> ImportKind:
    """What loader the file needs, from what the scanner found in its bytes."""
    formats = " ".join(report.formats)
    torch_globals = any(g.startswith("torch.") for g in report.globals)
    if report.format == "onnx":
        return "onnx"
    if report.format == "safetensors" or "torch-legacy" in formats or torch_globals:
        return "torch"
    if "skops" in report.formats or "schema.json" in formats:
        return "skops"
    if report.format == "zip" and "data.pkl" in formats:
        return "torch"
    if report.format == "pickle" or (
        report.format in ("gzip", "bz2", "xz", "lzma", "zlib") and formats.endswith(": pickle")
    ):
        return "sklearn-pickle"
    raise ModelError(
        f"{report.file}: found {report.format} ({', '.join(report.formats[:4])}), not a model "
        "mlwarden can import; expected a scikit-learn pickle or joblib file, skops, ONNX, or a "
        "torch state dict"
    )


def import_model_file(
    path: str | Path, policy: ScanPolicy | None = None, report: ScanReport | None = None
) -> ImportedModel:
    """Scan ``path``, then load and convert it without running anything it holds.

    Refuses (``UntrustedArtifactError``) an unsafe file with its findings, a pickled torch
    module with how to export it; ``ModelError`` for an unknown format or a scikit-learn model
    that is not a fitted classifier with ``predict_proba``. ``report`` reuses a scan of the
    same bytes.
    """
    policy = policy or ScanPolicy()
    path = Path(path)
    report = report or scan_file(path, policy)
    if not report.safe:
        raise UntrustedArtifactError(refusal(report))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from exc
    sha = hashlib.sha256(raw).hexdigest()
    kind = _kind(report)
    trusted = imported_trusted_types(policy.allow_globals)
    if kind == "sklearn-pickle":
        model = _classifier(restricted_load(raw, policy.allow_globals), path)
        data = dumps_model(model)
        loads_model(data, trusted)  # what registering it promises: it loads back
        allowed = tuple(policy.allow_globals)
        return ImportedModel(kind, data, MEDIA_TYPE, sha, report, model, _describe(model), allowed)
    if kind == "skops":
        model = _classifier(loads_model(raw, trusted), path)
        data, allowed = dumps_model(model), tuple(policy.allow_globals)
        return ImportedModel(kind, data, MEDIA_TYPE, sha, report, model, _describe(model), allowed)
    if kind == "onnx":
        _check_onnx(raw, path)
        return ImportedModel(kind, raw, ONNX_MEDIA_TYPE, sha, report)
    if report.format == "safetensors" and is_torch_classifier(raw):
        # weights with their recorded architecture: kept as they are, once they load back
        _, config = load_torch_classifier(raw)
        details = {"classes": [str(c) for c in config.classes], "layers": len(config.layers)}
        return ImportedModel(kind, raw, TORCH_MEDIA_TYPE, sha, report, details=details)
    tensors = state_dict_tensors(path, raw, safetensors=report.format == "safetensors")
    details = {"tensors": len(tensors), "parameters": int(sum(t.numel() for t in tensors.values()))}
    return ImportedModel(
        kind, _safetensors(tensors), STATE_DICT_MEDIA_TYPE, sha, report, details=details
    )


def _classifier(model: Any, path: Path) -> Any:
    """``model`` if it is a fitted classifier with ``predict_proba``; else a one-line refusal."""
    name = type(model).__name__
    if not callable(getattr(model, "predict_proba", None)):
        raise ModelError(
            f"{path}: holds a {name}, not a classifier with predict_proba; mlwarden audits "
            "classifiers (or a Pipeline ending in one)"
        )
    if getattr(model, "classes_", None) is None:
        raise ModelError(f"{path}: the {name} is not fitted (no classes_); fit it, then save it")
    return model


def _describe(model: Any) -> dict[str, Any]:
    return {"estimator": type(model).__name__, "classes": [str(c) for c in model.classes_]}


def _check_onnx(raw: bytes, path: Path) -> None:
    """``onnx.checker`` on the model when the onnx package is there (the scan ran already)."""
    try:
        import onnx
    except ImportError:
        return
    try:
        onnx.checker.check_model(onnx.load_from_string(raw))
    except Exception as exc:  # onnx raises its own untyped errors
        raise ModelError(f"{path}: the ONNX checker refused the model: {exc}") from exc


def state_dict_tensors(path: Path, raw: bytes, safetensors: bool) -> dict[str, torch.Tensor]:
    """The state dict of a torch checkpoint or safetensors file, loaded without pickle code.

    ``torch.load(weights_only=True)`` builds tensors and containers only. A training
    checkpoint's weights are taken from its first ``state_dict``/``model_state_dict``/``model``
    entry; the rest (optimizer, epoch) is not kept.
    """
    try:
        import torch
    except ImportError as exc:
        raise ModelError(f"{path}: torch files need torch: pip install 'mlwarden[torch]'") from exc
    if safetensors:
        from safetensors.torch import load

        try:
            return dict(load(raw))
        except Exception as exc:  # safetensors raises its own error type
            raise ModelError(f"{path}: not a readable safetensors file: {exc}") from exc
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError...
        raise UntrustedArtifactError(
            f"{path}: torch.load(weights_only=True) refused it ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); {_EXPORT_HINT}"
        ) from exc
    found = _tensors_of(loaded)
    if found is None and isinstance(loaded, dict):
        found = next(
            (t for k in _STATE_DICT_KEYS if (t := _tensors_of(loaded.get(k))) is not None), None
        )
    if not found:
        raise ModelError(
            f"{path}: holds no state dict (a mapping of names to tensors, or a checkpoint with "
            f"one under {', '.join(_STATE_DICT_KEYS)})"
        )
    return found


def _tensors_of(value: Any) -> dict[str, torch.Tensor] | None:
    import torch

    if (
        isinstance(value, dict)
        and value
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    ):
        return dict(value)
    return None


def _safetensors(tensors: dict[str, torch.Tensor]) -> bytes:
    """The tensors as safetensors bytes; shared storage (tied weights) is copied apart."""
    from safetensors.torch import save

    owned = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    return bytes(save(owned, metadata={"format": "mlwarden.state_dict", "format_version": "1"}))


class PositionalAdapter(SklearnAdapter):
    """A scikit-learn model fitted on a bare array: tables reach it as arrays, by position.

    Models brought from elsewhere are often fitted without column names; scikit-learn warns
    on every call that gives it named columns.
    """

    def predict_proba(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Class probabilities of the rows, the columns taken in table order."""
        import numpy as np

        return super().predict_proba(np.asarray(X))


def sklearn_adapter(estimator: Any) -> SklearnAdapter:
    """The adapter of a fitted scikit-learn model: by column name, or by position when it was
    fitted without names."""
    if getattr(estimator, "feature_names_in_", None) is None and hasattr(
        estimator, "n_features_in_"
    ):
        return PositionalAdapter(estimator)
    return SklearnAdapter(estimator)


def adapter_for(
    data: bytes,
    media_type: str,
    feature_names: list[str] | None = None,
    trusted: frozenset[str] | None = None,
) -> ModelAdapter:
    """The adapter that runs a registered or imported model of ``media_type``."""
    if media_type == MEDIA_TYPE:
        return sklearn_adapter(loads_model(data, trusted or imported_trusted_types()))
    if media_type == ONNX_MEDIA_TYPE:
        from mlwarden.models._onnx import OnnxAdapter

        return OnnxAdapter(data, feature_names=feature_names)
    if media_type == TORCH_MEDIA_TYPE:
        return torch_classifier_adapter(data, feature_names=feature_names)
    if media_type == STATE_DICT_MEDIA_TYPE:
        raise CapabilityError(_AUDIT_HINT)
    raise ModelError(f"no adapter runs {media_type} models")


def model_file_adapter(
    path: str | Path,
    feature_names: list[str] | None = None,
    policy: ScanPolicy | None = None,
    report: ScanReport | None = None,
) -> tuple[ModelAdapter, ImportedModel]:
    """Scan, safely load and wrap a model file in an adapter (as ``import`` would load it).

    A torch state dict is refused with how to export ONNX: it cannot run without its code.
    ``report`` reuses a scan of the same file.
    """
    imported = import_model_file(path, policy, report)
    if imported.media_type == STATE_DICT_MEDIA_TYPE:
        raise CapabilityError(f"{path}: {_AUDIT_HINT}")
    if imported.estimator is not None:
        return sklearn_adapter(imported.estimator), imported
    return adapter_for(imported.data, imported.media_type, feature_names), imported


def fitted_columns(adapter: ModelAdapter, X: pd.DataFrame) -> pd.DataFrame:
    """``X`` with the columns a scikit-learn model was fitted on, in its order.

    A model brought from elsewhere was fitted on its own column order, which a table need not
    share; a column it needs and the table lacks is a ``DataError`` naming it.
    """
    estimator = getattr(adapter, "estimator", None)
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        width = getattr(estimator, "n_features_in_", X.shape[1])
        if width != X.shape[1]:
            raise DataError(
                f"the model was fitted on {width} unnamed columns, the table has {X.shape[1]} "
                "besides the label; expected the same columns, in the order it was fitted on"
            )
        return X
    wanted = [str(n) for n in names]
    missing = [n for n in wanted if n not in X.columns]
    if missing:
        raise DataError(
            f"the model was fitted on column(s) {missing[:10]} that the table lacks; expected "
            f"a table with its {len(wanted)} columns: {wanted[:10]}"
            + (" ..." if len(wanted) > 10 else "")
        )
    return X[wanted]
