"""The scanner and the restricted unpickler over the whole corpus (tests/models/_scan_corpus.py).

Every malicious file must be unsafe with the finding its technique calls for, every benign
model safe, and no payload may ever run: the marker file each payload would create stays absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlwarden.cli import main
from mlwarden.errors import MlwardenError
from mlwarden.models import restricted_load, scan_file
from tests.models._scan_corpus import Sample, build_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Sample], Path, Path]:
    root = tmp_path_factory.mktemp("corpus")
    marker = root / "MARKER"
    return build_corpus(root, marker), root, marker


def test_the_corpus_is_big_enough(corpus: tuple[list[Sample], Path, Path]) -> None:
    samples, _, _ = corpus
    assert sum(s.malicious for s in samples) >= 60
    assert sum(not s.malicious for s in samples) >= 30


def test_every_malicious_file_is_unsafe_with_the_finding_its_technique_needs(
    corpus: tuple[list[Sample], Path, Path],
) -> None:
    samples, _, marker = corpus
    missed = []
    for sample in (s for s in samples if s.malicious):
        report = scan_file(sample.path)
        rules = {f.rule for f in report.findings if f.unsafe}
        names = {f.global_name for f in report.findings}
        if (
            report.safe
            or sample.rule not in rules
            or (sample.global_name is not None and sample.global_name not in names)
        ):
            missed.append((sample.path.name, sample.technique, report.summary()["findings"]))
    assert missed == []
    assert not marker.exists()


def test_every_benign_model_is_safe(corpus: tuple[list[Sample], Path, Path]) -> None:
    samples, _, marker = corpus
    flagged = [
        (s.path.name, [f.message for f in scan_file(s.path).findings if f.unsafe])
        for s in samples
        if not s.malicious and not scan_file(s.path).safe
    ]
    assert flagged == []
    assert not marker.exists()


def test_findings_locate_the_global_by_offset_and_opcode(
    corpus: tuple[list[Sample], Path, Path],
) -> None:
    samples, _, _ = corpus
    sample = next(s for s in samples if s.path.name == "memo_trick.pkl")
    finding = next(f for f in scan_file(sample.path).findings if f.rule == "dangerous-global")
    data = sample.path.read_bytes()
    assert finding.opcode == "STACK_GLOBAL"
    assert finding.offset is not None and data[finding.offset] == 0x93
    nested = next(s for s in samples if s.path.name == "nested.zip")
    finding = next(f for f in scan_file(nested.path).findings if f.rule == "dangerous-global")
    assert finding.member == "bundle.tar/inner.zip/model.pkl"


def test_restricted_load_gives_identical_predictions_for_every_benign_sklearn_pickle(
    corpus: tuple[list[Sample], Path, Path],
) -> None:
    samples, _, _ = corpus
    checked = 0
    for sample in (s for s in samples if not s.malicious and s.model is not None):
        with sample.path.open("rb") as stream:
            loaded = restricted_load(stream)
        method = "predict" if hasattr(sample.model, "predict") else "transform"
        expected = getattr(sample.model, method)(sample.rows)
        np.testing.assert_array_equal(getattr(loaded, method)(sample.rows), expected)
        checked += 1
    assert checked >= 40


def test_restricted_load_refuses_every_malicious_file_without_running_it(
    corpus: tuple[list[Sample], Path, Path],
) -> None:
    samples, _, marker = corpus
    loaded = []
    for sample in (s for s in samples if s.malicious):
        try:
            value = restricted_load(sample.path.read_bytes())
        except MlwardenError:
            continue
        if "joblib-data" in sample.tags:  # the payload is array data to joblib's reader
            assert isinstance(value["a"], np.ndarray)
            continue
        loaded.append(sample.path.name)
    assert loaded == []
    assert not marker.exists()


def test_the_cli_exits_1_on_the_malicious_folder_and_0_on_the_benign_one(
    corpus: tuple[list[Sample], Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, root, marker = corpus
    assert main(["scan", str(root / "malicious"), "--format", "json"]) == 1
    reports = json.loads(capsys.readouterr().out)
    assert reports and all(r["verdict"] == "unsafe" for r in reports)
    assert main(["scan", str(root / "benign")]) == 0
    assert "0 unsafe" in capsys.readouterr().out
    assert not marker.exists()
