"""Importing model files: scan first, safe loaders only, predictions and weights unchanged.

Every benign scikit-learn classifier of the scanner corpus predicts the same after import;
torch state dicts keep every weight bit for bit; unsafe files, whole pickled torch modules and
unknown formats are refused with a line saying why; and with the scanner bypassed the loaders
still refuse every malicious file without running it (defence in depth).
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlwarden.models._import as importing
from mlwarden.errors import CapabilityError, MlwardenError, ModelError, UntrustedArtifactError
from mlwarden.models import (
    MEDIA_TYPE,
    ONNX_MEDIA_TYPE,
    STATE_DICT_MEDIA_TYPE,
    adapter_for,
    import_model_file,
    imported_trusted_types,
    loads_model,
    model_file_adapter,
    scan_file,
)
from tests.models._scan_corpus import Sample, build_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Sample], Path]:
    root = tmp_path_factory.mktemp("import-corpus")
    marker = root / "MARKER"
    return build_corpus(root, marker), marker


def _classifier_samples(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if s.model is not None and hasattr(s.model, "predict_proba")]


def test_every_benign_classifier_predicts_the_same_after_import(
    corpus: tuple[list[Sample], Path],
) -> None:
    samples, _ = corpus
    classifiers = _classifier_samples(samples)
    assert len(classifiers) >= 40  # pickled and joblib-dumped, every family with probabilities
    for sample in classifiers:
        imported = import_model_file(sample.path)
        assert imported.kind == "sklearn-pickle" and imported.media_type == MEDIA_TYPE
        assert imported.source_sha256 == hashlib.sha256(sample.path.read_bytes()).hexdigest()
        back = loads_model(imported.data, imported_trusted_types())
        assert type(back) is type(sample.model), sample.path.name
        np.testing.assert_array_equal(
            back.predict_proba(sample.rows), sample.model.predict_proba(sample.rows)
        )


def test_models_without_predict_proba_are_refused_saying_so(
    corpus: tuple[list[Sample], Path],
) -> None:
    samples, _ = corpus
    others = [s for s in samples if s.model is not None and not hasattr(s.model, "predict_proba")]
    assert {type(s.model).__name__ for s in others} >= {"Ridge", "KMeans", "PCA"}
    for sample in others:
        with pytest.raises(ModelError, match="not a classifier with predict_proba"):
            import_model_file(sample.path)


def test_skops_and_onnx_files_import_as_what_they_are(corpus: tuple[list[Sample], Path]) -> None:
    samples, _ = corpus
    by_name = {s.path.name: s for s in samples}
    skops = import_model_file(by_name["logistic.skops"].path)
    assert skops.kind == "skops" and skops.estimator is not None
    rows = by_name["logistic.pkl"].rows
    np.testing.assert_array_equal(
        loads_model(skops.data).predict_proba(rows),
        by_name["logistic.pkl"].model.predict_proba(rows),
    )
    pytest.importorskip("onnxruntime")
    onnx_path = by_name["tree.onnx"].path
    onnx = import_model_file(onnx_path)
    assert onnx.media_type == ONNX_MEDIA_TYPE and onnx.data == onnx_path.read_bytes()
    adapter = adapter_for(onnx.data, onnx.media_type)
    expected = by_name["tree.pkl"].model.predict_proba(rows)
    np.testing.assert_allclose(adapter.predict_proba(rows), expected, atol=1e-6)


@pytest.mark.parametrize("name", ["floats.npy", "arrays.npz", "dense.keras"])
def test_files_that_are_not_models_are_refused_naming_the_format(
    corpus: tuple[list[Sample], Path], name: str
) -> None:
    samples, _ = corpus
    path = next(s.path for s in samples if s.path.name == name)
    with pytest.raises(ModelError, match="not a model mlwarden can import; expected"):
        import_model_file(path)


def test_every_malicious_file_is_refused_with_its_findings(
    corpus: tuple[list[Sample], Path],
) -> None:
    samples, marker = corpus
    malicious = [s for s in samples if s.malicious]
    for sample in malicious:
        with pytest.raises(UntrustedArtifactError, match=r"unsafe, not loaded: \d+ finding") as e:
            import_model_file(sample.path)
        assert str(sample.path) in str(e.value)
    assert not marker.exists()


def test_with_the_scanner_bypassed_no_malicious_file_is_loaded(
    corpus: tuple[list[Sample], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: the scanner says every file is safe; the loaders still refuse."""
    samples, marker = corpus

    def says_safe(path: Any, policy: Any = None) -> Any:
        report = scan_file(path, policy)
        return report.model_copy(update={"findings": []})

    monkeypatch.setattr(importing, "scan_file", says_safe)
    refused_by_unpickler = 0
    for sample in (s for s in samples if s.malicious):
        if scan_file(sample.path).format == "onnx":
            # ONNX is registered as it is and never run here (the checker still refuses
            # external data outside its folder); a custom-op domain fails later, in
            # onnxruntime, which loads no op library it was not given.
            with contextlib.suppress(ModelError):
                import_model_file(sample.path)
        else:
            with pytest.raises(MlwardenError) as e:
                import_model_file(sample.path)
            refused_by_unpickler += "allowlist" in str(e.value) or "which " in str(e.value)
        assert not marker.exists(), sample.path.name
    assert refused_by_unpickler >= 20  # the restricted unpickler itself caught these


def _torch() -> Any:
    return pytest.importorskip("torch")


def _state_dict() -> dict[str, Any]:
    torch = _torch()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    state = dict(net.state_dict())
    state["half"] = torch.randn(3, dtype=torch.float16)
    state["bf16"] = torch.randn(2, 2, dtype=torch.bfloat16)
    state["steps"] = torch.arange(4)
    state["tied"] = state["0.weight"]  # shared storage, as tied embeddings
    return state


def _same_bits(a: Any, b: Any) -> bool:
    torch = _torch()
    return bool(a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8)
    ))  # fmt: skip


@pytest.mark.parametrize("layout", ["state_dict", "checkpoint", "legacy"])
def test_torch_state_dicts_keep_every_weight_bit_for_bit(tmp_path: Path, layout: str) -> None:
    torch = _torch()
    from safetensors.torch import load

    state = _state_dict()
    path = tmp_path / "weights.pt"
    saved: Any = state
    if layout == "checkpoint":
        saved = {"model": state, "optimizer": {"lr": 0.1}, "epoch": 3}
    torch.save(saved, path, _use_new_zipfile_serialization=layout != "legacy")
    imported = import_model_file(path)
    assert imported.kind == "torch" and imported.media_type == STATE_DICT_MEDIA_TYPE
    tensors = load(imported.data)
    assert set(tensors) == set(state)
    assert all(_same_bits(tensors[k], v) for k, v in state.items())
    assert imported.details["tensors"] == len(state)


def test_a_state_dict_cannot_be_audited_and_says_how_to_export(tmp_path: Path) -> None:
    torch = _torch()
    path = tmp_path / "weights.pt"
    torch.save(_state_dict(), path)
    with pytest.raises(CapabilityError, match=r"export the model to ONNX \(torch.onnx.export\)"):
        model_file_adapter(path)


def test_a_whole_pickled_torch_module_is_refused_with_how_to_export(tmp_path: Path) -> None:
    torch = _torch()
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(3, 2)), path)
    with pytest.raises(UntrustedArtifactError) as e:
        import_model_file(path)
    message = str(e.value)
    assert "whole pickled torch module" in message and "torch.nn.modules.linear.Linear" in message
    assert "state dict" in message and "TorchScript" in message and "ONNX" in message
