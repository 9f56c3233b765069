"""``mlwarden import`` and ``mlwarden audit --model FILE`` as a user runs them.

Unsafe files are refused with their findings and nothing is registered; a benign model is
registered with its origin in lineage; with --data the gate decides (fail-closed); and every
supported format audits through the same scan-then-load path, with a clear line for the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from sklearn.linear_model import LogisticRegression

from mlwarden.cli import main
from mlwarden.lineage import LineageStore
from mlwarden.models import ModelRegistry, dumps_model


class HouseModel(LogisticRegression):
    """A team's own classifier class: off the allowlist until a scan policy names it."""


class _Payload:
    """Pickles as ``os.system("touch MARKER")``: what a poisoned model file does on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with table.csv and a LogisticRegression fitted on it in several formats."""
    import joblib
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.neighbors import KNeighborsClassifier

    root = tmp_path_factory.mktemp("import-cli")
    x, y = make_classification(200, 4, n_informative=3, n_redundant=0, random_state=0)
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"]).assign(label=y)
    frame.to_csv(root / "table.csv", index=False)
    named = LogisticRegression().fit(frame[["a", "b", "c", "d"]], y)
    (root / "lr.pkl").write_bytes(pickle.dumps(named))
    joblib.dump(LogisticRegression().fit(x, y), root / "lr.joblib")  # no column names
    (root / "lr.skops").write_bytes(dumps_model(named))
    knn = KNeighborsClassifier().fit(frame[["a", "b", "c", "d"]], y)
    (root / "knn.pkl").write_bytes(pickle.dumps(knn))  # a type trained models never hold
    try:
        from skl2onnx import to_onnx

        onnx = to_onnx(LogisticRegression().fit(x.astype("float32"), y), x[:1].astype("float32"))
        (root / "lr.onnx").write_bytes(onnx.SerializeToString())
    except ImportError:
        pass
    house = HouseModel().fit(frame[["a", "b", "c", "d"]], y)
    (root / "house.pkl").write_bytes(pickle.dumps(house))
    (root / "allow.yaml").write_text(f"allow_globals: [{__name__}.HouseModel]\n")
    (root / "evil.pkl").write_bytes(pickle.dumps(_Payload(root / "MARKER")))
    (root / "failing.yaml").write_text(
        "checks:\n  - check: performance_floor\n    metric: roc_auc\n    min: 0.9999\n"
    )
    return root


def _said(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    return " ".join((captured.out + captured.err).split())


def _versions(store: Path) -> list[str]:
    lineage = LineageStore(store)
    try:
        return [v.ref for v in ModelRegistry(lineage).versions()]
    finally:
        lineage.close()


def test_import_refuses_an_unsafe_file_with_its_findings(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    code = main(["import", str(files / "evil.pkl"), "--name", "evil", "--store", str(store)])
    said = _said(capsys)
    assert code == 1  # as mlwarden scan exits on an unsafe file
    assert "dangerous-global" in said and "system" in said and "not loaded" in said
    assert not (files / "MARKER").exists()
    assert not store.exists()  # nothing registered, nothing recorded


def test_import_registers_a_pickle_and_lineage_trace_shows_where_it_came_from(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "store")
    assert main(["import", str(files / "lr.pkl"), "--name", "lr", "--store", store]) == 0
    assert "registered lr@1 (signed)" in _said(capsys)
    assert main(["lineage", "trace", "lr@1", "--store", store, "--json"]) == 0
    trace = json.loads(capsys.readouterr().out)
    nodes = {node["role"]: node for node in trace["upstream"]}
    digest = hashlib.sha256((files / "lr.pkl").read_bytes()).hexdigest()
    assert nodes["original"]["artifact"]["sha256"] == digest
    assert nodes["original"]["produced_by"] is None  # a source: the file as it was given
    assert nodes["scan"]["produced_by"]["step"] == "import"
    assert nodes["model"]["inputs"][0]["artifact"]["sha256"] == digest
    assert main(["models", "show", "lr@1", "--store", store]) == 0


def test_import_with_data_registers_only_what_passes_the_policy(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    common = ["--data", str(files / "table.csv"), "--label", "label", "--store", str(store)]
    code = main(["import", str(files / "lr.joblib"), "--name", "weak", *common,
                 "--policy", str(files / "failing.yaml")])  # fmt: skip
    said = _said(capsys)
    assert code == 1 and "not registered" in said and "performance_floor" in said
    assert _versions(store) == []
    code = main(["import", str(files / "lr.joblib"), "--name", "ok", *common,
                 "--checks", "performance"])  # fmt: skip
    assert code == 0, _said(capsys)
    assert _versions(store) == ["ok@1"]


def test_import_refuses_a_whole_torch_module_saying_how_to_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = pytest.importorskip("torch")
    torch.save(torch.nn.Sequential(torch.nn.Linear(3, 2)), tmp_path / "net.pt")
    code = main(["import", str(tmp_path / "net.pt"), "--name", "net",
                 "--store", str(tmp_path / "store")])  # fmt: skip
    said = _said(capsys)
    assert code == 1 and "whole pickled torch module" in said
    assert "state dict" in said and "TorchScript" in said and "ONNX" in said


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--name", "x", "--checks", "performance"], "need --data"),
        (["--name", "x", "--data", "table.csv"], "name its label column"),
        (["--name", "two words"], "expected letters, digits"),
    ],
)
def test_import_options_are_checked_before_anything_is_recorded(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], said: str
) -> None:
    options = [str(files / o) if o.endswith(".csv") else o for o in options]
    store = tmp_path / "store"
    assert main(["import", str(files / "lr.pkl"), *options, "--store", str(store)]) == 2
    assert said in _said(capsys)
    assert not store.exists()


@pytest.mark.parametrize("name", ["lr.pkl", "lr.joblib", "lr.skops", "lr.onnx"])
def test_audit_takes_every_supported_model_file(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    if not (files / name).exists():
        pytest.skip("skl2onnx is not installed")
    if name.endswith(".onnx"):
        pytest.importorskip("onnxruntime")
    out = tmp_path / "report"
    code = main(["audit", "--model", str(files / name), "--data", str(files / "table.csv"),
                 "--label", "label", "--checks", "performance", "--out", str(out)])  # fmt: skip
    said = _said(capsys)
    assert code == 0, said
    assert "scanned safe" in said
    audited = json.loads((out / "report.json").read_text())["audited"]
    assert audited["registered"] is False and audited["path"] == str(files / name)
    assert audited["source_sha256"] == hashlib.sha256((files / name).read_bytes()).hexdigest()


def test_audit_of_a_missing_model_file_names_the_file_not_a_registry_name(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["audit", "--model", "model.pkl", "--data", str(files / "table.csv"),
                 "--label", "label"])  # fmt: skip
    said = _said(capsys)
    assert code == 3 and "model file model.pkl does not exist" in said
    assert "no model named" not in said


def test_audit_refuses_what_it_cannot_accept_saying_why(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    table = ["--data", str(files / "table.csv"), "--label", "label"]
    assert main(["audit", "--model", str(files / "evil.pkl"), *table]) == 1
    assert "dangerous-global" in _said(capsys)
    assert not (files / "MARKER").exists()
    np.save(tmp_path / "weights.npy", np.ones(3))
    assert main(["audit", "--model", str(tmp_path / "weights.npy"), *table]) == 5
    assert "not a model mlwarden can import" in _said(capsys)
    torch = pytest.importorskip("torch")
    torch.save(torch.nn.Linear(4, 2).state_dict(), tmp_path / "weights.pt")
    assert main(["audit", "--model", str(tmp_path / "weights.pt"), *table]) == 5
    assert "export the model to ONNX" in _said(capsys)


def test_audit_of_a_model_imported_without_data_needs_a_table(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "store")
    assert main(["import", str(files / "lr.pkl"), "--name", "lr", "--store", store]) == 0
    capsys.readouterr()
    assert main(["audit", "--model", "lr@1", "--store", store]) == 2
    assert "imported without data" in _said(capsys)
    code = main(["audit", "--model", "lr@1", "--store", store, "--data",
                 str(files / "table.csv"), "--label", "label", "--checks", "performance",
                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 0, _said(capsys)


def test_a_registered_import_of_any_allowlisted_estimator_loads_and_audits(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "store")
    table = ["--data", str(files / "table.csv"), "--label", "label"]
    assert main(["import", str(files / "knn.pkl"), "--name", "knn", "--store", store]) == 0
    code = main(["audit", "--model", "knn@1", "--store", store, *table,
                 "--checks", "performance", "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 0, _said(capsys)
    assert "pass" in _said(capsys)


def test_a_registered_state_dict_keeps_its_weights_and_audit_says_how_to_export(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import load

    weights = torch.nn.Linear(4, 2).state_dict()
    torch.save(weights, tmp_path / "weights.pt")
    store = str(tmp_path / "store")
    assert main(["import", str(tmp_path / "weights.pt"), "--name", "net", "--store", store]) == 0
    lineage = LineageStore(Path(store))
    try:
        version = ModelRegistry(lineage).get("net@1")
        saved = load(lineage.read_artifact(version.manifest.model_sha256))
    finally:
        lineage.close()
    assert all(torch.equal(saved[k], v) for k, v in weights.items()) and set(saved) == set(weights)
    capsys.readouterr()
    code = main(["audit", "--model", "net@1", "--store", store, "--data",
                 str(files / "table.csv"), "--label", "label"])  # fmt: skip
    said = _said(capsys)
    assert code == 5 and "weights without the network's code" in said and "ONNX" in said


def test_a_scan_policy_lets_a_teams_own_class_through_scan_and_load(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = ["--data", str(files / "table.csv"), "--label", "label"]
    audit = ["audit", "--model", str(files / "house.pkl"), *table, "--checks", "performance",
             "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(audit) == 1
    assert "HouseModel, which is not on the allowlist" in _said(capsys)
    assert main([*audit, "--scan-policy", str(files / "allow.yaml")]) == 0, _said(capsys)
    store = str(tmp_path / "store")
    code = main(["import", str(files / "house.pkl"), "--name", "house", "--scan-policy",
                 str(files / "allow.yaml"), "--store", store])  # fmt: skip
    assert code == 0, _said(capsys)
    # The signed import record names the class, so the registered model loads again.
    code = main(["audit", "--model", "house@1", "--store", store, *table, "--checks",
                 "performance", "--out", str(tmp_path / "again")])  # fmt: skip
    assert code == 0, _said(capsys)


def test_an_onnx_model_imported_with_data_is_audited_and_registered_as_it_is(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not (files / "lr.onnx").exists():
        pytest.skip("skl2onnx is not installed")
    pytest.importorskip("onnxruntime")
    store = tmp_path / "store"
    code = main(["import", str(files / "lr.onnx"), "--name", "onnx", "--data",
                 str(files / "table.csv"), "--label", "label", "--checks", "performance",
                 "--store", str(store)])  # fmt: skip
    assert code == 0, _said(capsys)
    lineage = LineageStore(store)
    try:
        version = ModelRegistry(lineage).get("onnx@1")
        assert version.manifest.model_media_type == "application/onnx"
        assert (
            lineage.read_artifact(version.manifest.model_sha256) == (files / "lr.onnx").read_bytes()
        )
    finally:
        lineage.close()
    code = main(["audit", "--model", "onnx@1", "--store", str(store), "--checks", "performance",
                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 0, _said(capsys)
