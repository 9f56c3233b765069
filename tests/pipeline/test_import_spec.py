"""A tabular spec that imports a model (``model: {import: path}``) instead of training one.

The pipeline scans and imports the file, then evaluates, audits, gates and registers it as it
would a trained model; a model that fails the policy is not registered, and the original
file's hash and its scan are in the registered version's lineage.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlwarden import datasets
from mlwarden.errors import SpecError
from mlwarden.lineage import LineageStore, upstream
from mlwarden.models import ModelRegistry
from mlwarden.pipeline import ImportSpec, LocalExecutor, PipelineSpec, import_spec, parse_spec

SPEC = """\
name: imported
data:
  dataset: phishing
  positive: phishing
model:
  import: model.pkl
checks:
  - check: performance_floor
    metric: roc_auc
    min: {floor}
register:
  name: imported
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding model.pkl: a LogisticRegression pickled as a user would, on phishing."""
    from sklearn.linear_model import LogisticRegression

    data = datasets.load("phishing")
    frame = data.frame.sample(frac=1.0, axis=1, random_state=0)  # its own column order
    X, y = frame.drop(columns=[data.label]), frame[data.label]
    model = LogisticRegression(max_iter=300).fit(X, y)
    root = tmp_path_factory.mktemp("import-spec")
    (root / "model.pkl").write_bytes(pickle.dumps(model))
    return root


def _run(folder: Path, floor: float, store: str) -> tuple[Any, LineageStore]:
    spec = parse_spec(SPEC.format(floor=floor), base=folder)
    lineage = LineageStore(folder / store)
    return LocalExecutor(lineage).run(spec), lineage


def test_the_spec_resolves_the_model_path_against_its_folder(folder: Path) -> None:
    spec = parse_spec(SPEC.format(floor=0.8), base=folder)
    assert isinstance(spec, PipelineSpec) and spec.train is None and spec.model is not None
    assert spec.model.path == (folder / "model.pkl").resolve()


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.replace("model:\n  import: model.pkl\n", ""),
        lambda s: s + "train:\n  estimator: logistic_regression\n",
    ],
    ids=["neither", "both"],
)
def test_a_spec_gives_train_or_an_imported_model_not_both_nor_neither(edit: Any) -> None:
    with pytest.raises(SpecError, match=r"exactly one of 'train'.*'model: \{import: path\}'"):
        parse_spec(edit(SPEC.format(floor=0.8)))


def test_an_imported_model_is_evaluated_audited_gated_and_registered(folder: Path) -> None:
    result, lineage = _run(folder, 0.8, "passing")
    try:
        assert result.status == "completed", result.error
        assert [s.step for s in result.steps if s.step == "train"] == []
        assert result.model_version == "imported@1"
        registry = ModelRegistry(lineage)
        version, adapter = registry.load("imported@1")
        original = pickle.loads((folder / "model.pkl").read_bytes())  # our own test file
        rows = datasets.load("phishing").frame[list(original.feature_names_in_)].head(50)
        np.testing.assert_array_equal(adapter.predict_proba(rows), original.predict_proba(rows))
        arts = version.manifest.artifacts
        digest = hashlib.sha256((folder / "model.pkl").read_bytes()).hexdigest()
        assert arts["original"] == digest
        scan = json.loads(lineage.read_artifact(arts["scan"]))
        assert scan["verdict"] == "safe" and scan["format"] == "pickle"
        metrics = json.loads(lineage.read_artifact(arts["metrics"]))
        assert metrics["roc_auc"] > 0.9
        # The model's lineage leads to the original file, read as the run's source.
        model_node = upstream(lineage, version.manifest.model_sha256, "model")
        assert model_node.produced_by is not None and model_node.produced_by.step == "import"
        # beside the table's info, whose header gives a matrix model its column order
        inputs = {n.artifact.name: n.artifact.sha256 for n in model_node.inputs}
        assert inputs.keys() == {"model.pkl", "info.json"} and inputs["model.pkl"] == digest
    finally:
        lineage.close()


def test_an_imported_model_that_fails_the_policy_is_not_registered(folder: Path) -> None:
    result, lineage = _run(folder, 0.9999, "failing")
    try:
        assert result.status == "rejected" and result.exit_code == 1
        assert "performance_floor" in (result.error or "")
        assert result.model_version is None
        assert lineage.records("model_version") == []
    finally:
        lineage.close()


def test_a_torch_state_dict_cannot_stand_in_a_tabular_pipeline(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "model.pkl")
    result, lineage = _run(tmp_path, 0.8, "store")
    try:
        assert result.status == "failed"
        assert "torch state dict" in (result.error or "")
        assert "torch.onnx.export" in (result.error or "")
        assert lineage.records("model_version") == []
    finally:
        lineage.close()


def test_an_unsafe_model_file_fails_the_import_step_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    # GLOBAL os.system, then call it with one argument: what a poisoned pickle does on load.
    (tmp_path / "model.pkl").write_bytes(b"cos\nsystem\n(Vtouch " + str(marker).encode() + b"\ntR.")
    result, lineage = _run(tmp_path, 0.8, "store")
    try:
        assert result.status == "failed" and result.exit_code == 5
        assert "unsafe, not loaded" in (result.error or "") and "os.system" in (result.error or "")
        assert lineage.records("model_version") == []
        assert not marker.exists()
    finally:
        lineage.close()


def test_a_missing_model_file_is_named(tmp_path: Path) -> None:
    spec = parse_spec(SPEC.format(floor=0.8), base=tmp_path)
    lineage = LineageStore(tmp_path / "store")
    try:
        with pytest.raises(SpecError, match=r"model.import: cannot read .*model.pkl"):
            LocalExecutor(lineage).run(spec)
    finally:
        lineage.close()


def test_import_spec_builds_the_import_alone_or_the_tabular_pipeline(folder: Path) -> None:
    alone = import_spec(folder / "model.pkl", "mine")
    assert isinstance(alone, ImportSpec) and alone.registry.name == "mine"
    with_data = import_spec(folder / "model.pkl", "mine", data="phishing", checks=[
        {"check": "performance_floor", "metric": "roc_auc", "min": 0.8}
    ])  # fmt: skip
    assert isinstance(with_data, PipelineSpec) and with_data.data.dataset == "phishing"
    with pytest.raises(SpecError, match=r"register\.name"):
        import_spec(folder / "model.pkl", "no spaces")
