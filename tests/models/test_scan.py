"""The model-file scanner on single files: formats by content, limits, policy, output, unpickler."""

from __future__ import annotations

import io
import json
import pickle
import sys
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlwarden.cli import main
from mlwarden.errors import DataError, ModelError, SpecError, UntrustedArtifactError
from mlwarden.models import (
    ScanPolicy,
    allowed_globals,
    load_scan_policy,
    restricted_load,
    scan_file,
    scan_paths,
    scan_sarif,
)
from tests.models._scan_corpus import _p0_call, _Reduce, _tar, _zip


class Custom:
    """A class of the user's own, off the default allowlist."""

    def __init__(self, value: int) -> None:
        self.value = value


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _rules(path: Path, policy: ScanPolicy | None = None) -> set[str]:
    return {f.rule for f in scan_file(path, policy).findings if f.unsafe}


@pytest.mark.parametrize(
    ("name", "data", "fmt"),
    [
        ("weights.txt", pickle.dumps({"a": 1}, protocol=2), "pickle"),
        ("model.onnx", pickle.dumps([1.0], protocol=5), "pickle"),
        ("notes.pkl", b"just some notes about the model\n", "text"),
        ("archive.bin", _zip({"a.txt": b"hello\n"}), "zip"),
        ("model.pkl", _tar({"a.txt": b"hello\n"}), "tar"),
        ("empty.pt", b"", "empty"),
    ],
)
def test_the_format_comes_from_the_bytes_not_the_extension(
    tmp_path: Path, name: str, data: bytes, fmt: str
) -> None:
    report = scan_file(_write(tmp_path, name, data))
    assert report.format == fmt
    assert report.safe


def test_joblib_arrays_of_every_layout_are_stepped_over(tmp_path: Path) -> None:
    arrays = {
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "structured": np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
        "strings": np.array(["ab", "cde"]),
        "big_endian": np.arange(5, dtype=">i2"),
        "objects": np.array(["x", 1], dtype=object),
        "empty": np.zeros((0, 3)),
        "scalar": np.array(3.5),
        "dates": np.array(["2026-01-01"], dtype="M8[D]"),
    }
    path = tmp_path / "arrays.joblib"
    joblib.dump(arrays, path)
    report = scan_file(path)
    assert report.safe, report.findings
    loaded = restricted_load(path.read_bytes())
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value)


def test_a_truncated_pickle_is_unsafe(tmp_path: Path) -> None:
    data = pickle.dumps({"weights": list(range(100))}, protocol=4)
    assert _rules(_write(tmp_path, "cut.pkl", data[: len(data) // 2])) == {"malformed"}


def test_trailing_bytes_that_are_not_a_pickle_are_unsafe(tmp_path: Path) -> None:
    data = pickle.dumps([1, 2], protocol=4) + b"\x00garbage"
    assert _rules(_write(tmp_path, "tail.pkl", data)) == {"malformed"}


def test_an_npy_whose_data_does_not_match_its_header_is_unsafe(tmp_path: Path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.arange(10.0))
    assert _rules(_write(tmp_path, "a.npy", buf.getvalue()[:-8])) == {"malformed"}


def test_archive_limits_come_from_the_policy(tmp_path: Path) -> None:
    nested = _zip({"a.zip": _zip({"b.zip": _zip({"m.pkl": pickle.dumps(1)})})})
    path = _write(tmp_path, "deep.zip", nested)
    assert scan_file(path).safe
    assert "archive-limits" in _rules(path, ScanPolicy(max_depth=2))
    many = _write(tmp_path, "many.zip", _zip({f"{i}.txt": b"x\n" for i in range(5)}))
    assert "archive-limits" in _rules(many, ScanPolicy(max_members=4))


def test_a_policy_allows_the_users_own_classes_but_never_a_dangerous_one(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, "custom.pkl", pickle.dumps(Custom(3)))
    assert "global-not-allowed" in _rules(path)
    name = f"{Custom.__module__}.Custom"
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(f"allow_globals: [{name}, os.system]\nmax_depth: 3\n")
    policy = load_scan_policy(policy_file)
    assert scan_file(path, policy).safe
    evil = _write(tmp_path, "evil.pkl", _p0_call("os", "system", "true"))
    assert "dangerous-global" in _rules(evil, policy)
    assert restricted_load(path.read_bytes(), allow=[name]).value == 3
    with pytest.raises(UntrustedArtifactError, match=r"os\.system cannot be allowed"):
        restricted_load(path.read_bytes(), allow=["os.system"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("allow_globals: [not a name]\n", "allow_globals: .*not a global"),
        ("max_depth: 0\n", "max_depth"),
        ("unknown_key: 1\n", "unknown_key"),
        ("[1, 2]\n", "expected a mapping"),
        ("max_depth: [\n", "not valid YAML"),
    ],
)
def test_a_bad_policy_is_one_clear_error(tmp_path: Path, text: str, expected: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    with pytest.raises(SpecError, match=expected):
        load_scan_policy(policy)
    assert main(["scan", str(tmp_path), "--policy", str(policy)]) == 2


def test_sarif_output_names_rule_file_and_offset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = _write(tmp_path, "evil.bin", _p0_call("os", "system", "true"))
    _write(tmp_path, "fine.pkl", pickle.dumps([1.0]))
    assert main(["scan", str(tmp_path), "--format", "sarif"]) == 1
    sarif = json.loads(capsys.readouterr().out)
    assert sarif["version"] == "2.1.0"
    (result,) = sarif["runs"][0]["results"]
    assert result["ruleId"] == "dangerous-global"
    assert result["level"] == "error"
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == str(evil)
    assert result["locations"][0]["physicalLocation"]["region"]["byteOffset"] == 0
    assert result["properties"]["global"] == "os.system"
    assert len(sarif["runs"][0]["artifacts"]) == 2
    assert (
        scan_sarif(scan_paths([tmp_path]), "x")["runs"][0]["results"] == sarif["runs"][0]["results"]
    )


def test_a_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["scan", str(tmp_path / "nope.pkl")]) == 2


def test_onnx_without_its_reader_cannot_be_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [x])
    path = _write(tmp_path, "m.data", helper.make_model(graph).SerializeToString())
    assert scan_file(path).format == "onnx" and scan_file(path).safe
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert _rules(path) == {"cannot-check"}


def test_hdf5_without_h5py_cannot_be_checked(tmp_path: Path) -> None:
    try:
        import h5py  # noqa: F401
    except ImportError:
        path = _write(tmp_path, "model.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
        assert _rules(path) == {"cannot-check"}
    else:
        pytest.skip("h5py is installed: the HDF5 reader path runs instead")


def test_the_restricted_unpickler_refuses_what_the_scanner_would_catch() -> None:
    with pytest.raises(UntrustedArtifactError, match=r"posix\.system"):
        restricted_load(pickle.dumps(_Reduce(__import__("os").system, ("true",))))
    with pytest.raises(UntrustedArtifactError, match="persistent ids"):
        restricted_load(b"\x80\x02X\x01\x00\x00\x000Q.")
    with pytest.raises(UntrustedArtifactError, match="extension registry"):
        restricted_load(b"\x80\x02\x82\x01.")
    with pytest.raises(ModelError):
        restricted_load(b"\x80\x04K")


def test_the_allowlist_is_data_and_holds_no_dangerous_name() -> None:
    from mlwarden.models._scan_allowlist import dangerous_reason

    names = allowed_globals()
    assert "sklearn.linear_model._logistic.LogisticRegression" in names
    assert "torch._utils._rebuild_tensor_v2" in names
    dangerous = [n for n in names if dangerous_reason(*n.rsplit(".", 1)) is not None]
    assert dangerous == []


def test_a_zip_member_is_scanned_by_content_under_any_name(tmp_path: Path) -> None:
    data = _zip({"readme.md": _p0_call("os", "system", "true")}, zipfile.ZIP_DEFLATED)
    report = scan_file(_write(tmp_path, "bundle.zip", data))
    (finding,) = [f for f in report.findings if f.unsafe]
    assert finding.member == "readme.md" and finding.global_name == "os.system"


def test_a_pipe_in_a_folder_is_reported_not_read(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "pipe.pkl")
    (report,) = scan_paths([tmp_path])
    assert report.format == "not-a-file" and not report.safe


def test_an_unreadable_file_is_one_clear_error(tmp_path: Path) -> None:
    import os

    locked = _write(tmp_path, "locked.pkl", b"N.")
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: the file stays readable")
        with pytest.raises(DataError, match="cannot read"):
            scan_file(locked)
    finally:
        locked.chmod(0o644)


_SEEDS = [pickle.dumps({"w": [1.0, 2.0], "name": "m"}, protocol=p) for p in range(6)] + [
    _zip({"archive/data.pkl": pickle.dumps([1], protocol=2)}),
    _tar({"a.pkl": b"N."}),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(_SEEDS),
    cut=st.integers(min_value=0, max_value=400),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
    tail=st.binary(max_size=16),
)
def test_any_bytes_give_a_report_never_an_exception(
    tmp_path_factory: pytest.TempPathFactory,
    seed: bytes,
    cut: int,
    flips: list[tuple[int, int]],
    tail: bytes,
) -> None:
    data = bytearray(seed[: max(1, min(cut, len(seed)))] if cut < len(seed) else seed)
    for at, value in flips:
        if data:
            data[at % len(data)] = value
    path = tmp_path_factory.mktemp("fuzz") / "f"
    path.write_bytes(bytes(data) + tail)
    report = scan_file(path)
    assert report.verdict in ("safe", "unsafe")
    assert "scanner-error" not in {f.rule for f in report.findings}, report.findings
    if data == seed[: len(data)] and len(data) < len(seed) and seed[:1] == b"\x80" and not tail:
        assert not report.safe  # a truncated pickle is never safe
