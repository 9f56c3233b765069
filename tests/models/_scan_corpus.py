"""Builds the model-file scanning corpus in a folder: malicious files and benign real models.

Nothing here is committed as a file: every sample is written when ``build_corpus`` runs. Each
malicious payload, if some loader ever ran it, would only create the ``marker`` file; a test
that scans (or restricted-loads) the corpus then asserts the marker is absent. Used by
``tests/models/test_scan_corpus.py`` and ``bench/scan.py``.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import io
import json
import lzma
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Sample:
    """One corpus file: malicious (with the finding rule expected) or benign."""

    path: Path
    malicious: bool
    technique: str
    rule: str | None = None  # a finding rule the scanner must report
    global_name: str | None = None  # the global it must name, when there is one
    model: Any = None  # benign scikit-learn model (for restricted-load round trips)
    rows: Any = None  # rows to compare predictions on
    pickled: bool = False  # a plain or joblib pickle restricted_load can read
    tags: set[str] = field(default_factory=set)


class _Reduce:
    """Pickles as ``func(*args)``: how a malicious file calls what it wants on load."""

    def __init__(self, func: Any, args: tuple[Any, ...]) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args

    def __call__(self, *args: Any) -> None:  # pickle wants callables; never called
        raise RuntimeError("corpus payloads are never run")


# -- hand-assembled opcodes -------------------------------------------------------------------


def _v(text: str) -> bytes:  # protocol 0 UNICODE
    return b"V" + text.encode("raw_unicode_escape") + b"\n"


def _u(text: str) -> bytes:  # SHORT_BINUNICODE
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def _c(module: str, name: str) -> bytes:  # GLOBAL
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _p0_call(module: str, name: str, *args: str) -> bytes:
    return _c(module, name) + b"(" + b"".join(_v(a) for a in args) + b"tR."


def _p4_stack_global(module: str, name: str, arg: str) -> bytes:
    return (
        b"\x80\x04"
        + _u(module)
        + b"\x94"
        + _u(name)
        + b"\x94\x93\x94"
        + _u(arg)
        + b"\x94\x85\x94R\x94."
    )


def _memo_trick(marker: str) -> bytes:
    """Real names go to the memo first; a decoy pair sits right before STACK_GLOBAL."""
    return (
        b"\x80\x04"
        + _u("posix")
        + b"q\x00"
        + _u("system")
        + b"q\x01"
        + _u("collections")
        + _u("OrderedDict")
        + b"0"
        + b"0"  # decoys, popped
        + b"h\x00h\x01\x93"
        + _u(f"touch {marker}")
        + b"\x85R."
    )


def _memo_overwrite(marker: str) -> bytes:
    """A memo slot first holds an allowed name, then is overwritten with a dangerous one."""
    return (
        b"\x80\x04"
        + _u("collections")
        + b"q\x00"
        + _u("OrderedDict")
        + b"q\x010"
        + b"0"
        + _u("os")
        + b"q\x00"
        + _u("system")
        + b"q\x01"
        + b"00"
        + b"h\x00h\x01\x93"
        + _u(f"touch {marker}")
        + b"\x85R."
    )


def _computed_name(marker: str) -> bytes:
    """STACK_GLOBAL's module name is built at load time (``_codecs.encode`` of a string)."""
    return (
        b"\x80\x04"
        + _c("_codecs", "encode")
        + _u("os")
        + _u("latin1")
        + b"\x86R"
        + _u("system")
        + b"\x93"
        + _u(f"touch {marker}")
        + b"\x85R."
    )


def _npy_object(payload: bytes) -> bytes:
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload


def _zip(members: dict[str, bytes], compress: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _torch_zip(data_pkl: bytes) -> bytes:
    return _zip(
        {
            "archive/data.pkl": data_pkl,
            "archive/byteorder": b"little",
            "archive/data/0": b"\x00" * 16,
            "archive/version": b"3\n",
        }
    )


def _tampered_zip(real: str, shown: str, data: bytes) -> bytes:
    """A zip whose central directory names ``shown`` while the local header names ``real``."""
    raw = bytearray(_zip({real: data}))
    central = raw.rindex(b"PK\x01\x02")
    at = raw.index(real.encode(), central)
    raw[at : at + len(real)] = shown.encode().ljust(len(real), b"_")[: len(real)]
    return bytes(raw)


def _legacy_torch(main: bytes) -> bytes:
    parts = [0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001}]
    head = b"".join(pickle.dumps(p, protocol=2) for p in parts)
    return head + main + pickle.dumps([], protocol=2)


def _overlapping_zip(data: bytes) -> bytes:
    """Two central-directory entries pointing at the same local header (an overlap bomb)."""
    raw = _zip({"a.pkl": data})
    central = raw.index(b"PK\x01\x02")
    end = raw.index(b"PK\x05\x06")
    entry = raw[central:end]
    eocd = bytearray(raw[end:])
    struct.pack_into("<HHI", eocd, 8, 2, 2, len(entry) * 2)
    return raw[:central] + entry + entry.replace(b"a.pkl", b"b.pkl") + bytes(eocd)


# -- the corpus -------------------------------------------------------------------------------


def _malicious(root: Path, marker: Path) -> list[Sample]:
    m = str(marker)
    touch = f"touch {m}"
    py = f"open({m!r}, 'w').close()"
    out: list[Sample] = []

    def add(name: str, data: bytes, technique: str, rule: str, glob: str | None = None) -> None:
        path = root / "malicious" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out.append(Sample(path, True, technique, rule, glob, pickled=True))

    def dumps(obj: Any, protocol: int = 4) -> bytes:
        return pickle.dumps(obj, protocol=protocol)

    system = _Reduce(os.system, (touch,))
    for proto in range(6):
        add(
            f"os_system_p{proto}.pkl",
            dumps(system, proto),
            f"os.system protocol {proto}",
            "dangerous-global",
            "posix.system",
        )
    add("os_system.pt", dumps(system), "disguised as .pt", "dangerous-global", "posix.system")
    add("os_system.bin", dumps(system), "disguised as .bin", "dangerous-global")
    add("os_system.npy", dumps(system), "disguised as .npy", "dangerous-global")
    add("os_system.h5", dumps(system), "disguised as .h5", "dangerous-global")
    add("os_system.safetensors", dumps(system), "disguised as .safetensors", "dangerous-global")
    add("os_system_noext", dumps(system), "no extension", "dangerous-global")
    add(
        "protocol0.txt",
        _p0_call("os", "system", touch),
        "protocol-0 text pickle as .txt",
        "dangerous-global",
        "os.system",
    )
    add("nt_system.pkl", _p0_call("nt", "system", touch), "nt.system", "dangerous-global")
    add("posix_system.pkl", _p0_call("posix", "system", touch), "posix.system", "dangerous-global")
    add(
        "py2_builtin_eval.pkl",
        _p0_call("__builtin__", "eval", py),
        "Python 2 __builtin__ name",
        "dangerous-global",
        "builtins.eval",
    )
    for name, func, args in [
        ("eval", eval, (py,)),
        ("exec", exec, (py,)),
        ("compile", compile, (py, "x", "exec")),
        ("open", open, (m, "w")),
        ("import", __import__, ("os",)),
    ]:
        add(
            f"builtins_{name}.pkl",
            dumps(_Reduce(func, args)),
            f"builtins.{func.__name__}",
            "dangerous-global",
            f"{func.__module__}.{func.__name__}",
        )
    import runpy
    import shutil
    import subprocess

    add(
        "subprocess_call.joblib",
        dumps(_Reduce(subprocess.call, (["touch", m],))),
        "subprocess.call as .joblib",
        "dangerous-global",
        "subprocess.call",
    )
    add(
        "subprocess_popen_stack_global.pkl",
        _p4_stack_global("subprocess", "Popen", touch),
        "STACK_GLOBAL subprocess.Popen",
        "dangerous-global",
        "subprocess.Popen",
    )
    add(
        "runpy.pkl",
        dumps(_Reduce(runpy._run_code, (py, {}))),
        "runpy._run_code",
        "dangerous-global",
        "runpy._run_code",
    )
    add(
        "pip_main.pkl",
        _p0_call("pip", "main", "--log", m, "--version"),
        "pip.main",
        "dangerous-global",
        "pip.main",
    )
    add(
        "shutil_copy.pkl",
        dumps(_Reduce(shutil.copyfile, (os.devnull, m))),
        "shutil.copyfile",
        "dangerous-global",
        "shutil.copyfile",
    )
    add("webbrowser.pkl", _p0_call("webbrowser", "Error"), "webbrowser", "dangerous-global")
    add("socket.pkl", _p0_call("socket", "socket"), "socket.socket", "dangerous-global")
    add("ctypes.pkl", _p0_call("ctypes", "CDLL", m), "ctypes.CDLL", "dangerous-global")
    add(
        "importlib.pkl",
        _p0_call("importlib", "import_module", "os"),
        "importlib",
        "dangerous-global",
    )
    add("code.pkl", _p0_call("code", "InteractiveInterpreter"), "code", "dangerous-global")
    add("sys.pkl", _p0_call("sys", "getrecursionlimit"), "sys", "dangerous-global")
    add(
        "torch_load.pt",
        _p0_call("torch", "load", m),
        "nested torch.load",
        "dangerous-global",
        "torch.load",
    )
    add(
        "numpy_load.pkl",
        _p0_call("numpy", "load", m),
        "nested numpy.load",
        "dangerous-global",
        "numpy.load",
    )
    getattr_chain = _Reduce(_Reduce(getattr, (_Reduce(__import__, ("os",)), "system")), (touch,))
    add(
        "getattr_chain.pkl",
        dumps(getattr_chain),
        "builtins.getattr chain",
        "dangerous-global",
        "builtins.getattr",
    )
    import operator

    caller = _Reduce(
        _Reduce(operator.methodcaller, ("system", touch)), (_Reduce(__import__, ("os",)),)
    )
    add(
        "methodcaller.pkl",
        dumps(caller),
        "operator.methodcaller",
        "dangerous-global",
        "operator.methodcaller",
    )
    add(
        "attrgetter.pkl",
        dumps(_Reduce(operator.attrgetter, ("system",))),
        "operator.attrgetter",
        "dangerous-global",
    )
    add(
        "partial.pkl",
        dumps(_Reduce(functools.partial(os.system, touch), ())),
        "functools.partial over os.system",
        "dangerous-global",
        "functools.partial",
    )
    add(
        "memo_trick.pkl",
        _memo_trick(m),
        "STACK_GLOBAL names from the memo behind decoys",
        "dangerous-global",
        "posix.system",
    )
    add(
        "memo_overwrite.pkl",
        _memo_overwrite(m),
        "memo slot overwritten",
        "dangerous-global",
        "os.system",
    )
    add(
        "computed_name.pkl",
        _computed_name(m),
        "STACK_GLOBAL name computed at load",
        "unresolved-global",
    )
    add("inst.pkl", b"(" + _v(touch) + b"ios\nsystem\n.", "INST opcode", "dangerous-global")
    add("obj.pkl", b"(" + _c("os", "system") + _v(touch) + b"o.", "OBJ opcode", "dangerous-global")
    add(
        "ext1.pkl",
        b"\x80\x02\x82\x01" + _v(touch) + b"\x85R.",
        "EXT1 extension registry",
        "extension-registry",
    )
    add(
        "truncated_after_reduce.pkl",
        _p0_call("os", "system", touch)[:-1],
        "no STOP: runs, then fails",
        "dangerous-global",
    )
    add(
        "unknown_opcode.pkl",
        dumps(system)[:-1] + b"\xff.",
        "unknown opcode after the call",
        "malformed",
    )
    benign = dumps({"weights": [1.0, 2.0]})
    add(
        "appended_pickle.pkl",
        benign + dumps(system),
        "second pickle appended after STOP",
        "dangerous-global",
    )
    add(
        "appended_p0.pkl",
        benign + _p0_call("os", "system", touch),
        "protocol-0 pickle appended",
        "dangerous-global",
    )
    add(
        "dotted_chain.pkl",
        b"\x80\x04" + _u("collections") + _u("_sys.modules") + b"\x93.",
        "attribute chain through an allowed module",
        "global-not-allowed",
    )
    add(
        "custom_class.pkl",
        _p0_call("evil_pkg.payloads", "Runner", touch),
        "class off the allowlist",
        "global-not-allowed",
        "evil_pkg.payloads.Runner",
    )
    import joblib
    import numpy as np

    buf = io.BytesIO()
    joblib.dump({"coef": np.arange(2000.0), "hook": system}, buf)
    add(
        "joblib_after_array.joblib",
        buf.getvalue(),
        "payload after joblib's raw array bytes",
        "dangerous-global",
    )
    buf = io.BytesIO()
    joblib.dump({"ids": np.array([system, 1], dtype=object)}, buf)
    add(
        "joblib_array_polyglot.joblib",
        _joblib_polyglot(m),
        "joblib array bytes that pickle.load runs as opcodes",
        "dangerous-global",
        "os.system",
    )
    out[-1].tags.add("joblib-data")  # joblib's reader (and restricted_load) see only data
    add(
        "joblib_object_array.joblib",
        buf.getvalue(),
        "payload in a joblib object array",
        "dangerous-global",
    )
    for kind, pack in [
        ("gzip", gzip.compress),
        ("bz2", bz2.compress),
        ("xz", lzma.compress),
        ("zlib", zlib.compress),
    ]:
        add(
            f"compressed_{kind}.joblib",
            pack(dumps(system)),
            f"{kind}-compressed pickle",
            "dangerous-global",
        )
    add(
        "lzma_alone.joblib",
        lzma.compress(dumps(system), format=lzma.FORMAT_ALONE),
        "lzma-compressed pickle",
        "dangerous-global",
    )
    add(
        "npy_object.npy",
        _npy_object(dumps(system, 2)),
        "object .npy holding a pickle",
        "dangerous-global",
    )
    add(
        "npz_object.npz",
        _zip({"arr_0.npy": _npy_object(dumps(system, 2))}),
        "object array inside .npz",
        "dangerous-global",
    )
    add("torch_zip.pt", _torch_zip(dumps(system, 2)), "torch zip checkpoint", "dangerous-global")
    add(
        "torch_zip_renamed.bin",
        _torch_zip(_p0_call("os", "system", touch)),
        "torch zip as .bin, protocol 0 data.pkl",
        "dangerous-global",
    )
    add(
        "legacy_torch_tar.tar",
        _legacy_torch_tar(dumps(system, 2)),
        "payload in a legacy torch tar's storages",
        "dangerous-global",
        "posix.system",
    )
    add(
        "legacy_torch.pt",
        _legacy_torch(dumps(system, 2)),
        "legacy torch.save format",
        "dangerous-global",
    )
    add(
        "tampered_zip.pt",
        _tampered_zip("archive/data.pkl", "archive/data.txt", dumps(system)),
        "zip local header and central directory disagree",
        "tampered-zip-header",
    )
    inner = _zip({"model.pkl": dumps(system)})
    nested = _zip({"bundle.tar": _tar({"inner.zip": inner})}, zipfile.ZIP_DEFLATED)
    add("nested.zip", nested, "zip in tar in zip", "dangerous-global")
    add("nested_disguised.h5", nested, "nested archive as .h5", "dangerous-global")
    add(
        "traversal.tar", _tar({"../../outside.pkl": benign}), "tar path traversal", "path-traversal"
    )
    add("traversal.zip", _zip({"/abs/model.pkl": benign}), "zip absolute path", "path-traversal")
    program = _p0_call("posix", "system", touch)
    if len(program) <= 100:  # a ustar name field: the tar's first bytes
        add(
            "tar_pickle_polyglot.tar",
            _tar({program.decode(): benign}),
            "tar whose first member name is a pickle program",
            "dangerous-global",
            "posix.system",
        )
    add(
        "zip_bomb.zip",
        _zip({"big.bin": b"\x00" * (48 << 20)}, zipfile.ZIP_DEFLATED),
        "high-ratio zip bomb",
        "zip-bomb",
    )
    add("overlap_bomb.zip", _overlapping_zip(benign), "overlapping zip entries", "zip-bomb")
    add(
        "tar_gz.tgz",
        gzip.compress(_tar({"m.pkl": dumps(system)})),
        "gzip'd tar",
        "dangerous-global",
    )
    add("bad_zip.pt", b"PK\x03\x04" + b"\x00" * 40, "malformed zip header", "malformed")
    st_header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 64]}})
    add(
        "safetensors_oob.safetensors",
        struct.pack("<Q", len(st_header)) + st_header.encode() + b"\x00" * 16,
        "safetensors offsets past the file",
        "malformed",
    )
    st_header = json.dumps(
        {
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
        }
    )
    add(
        "safetensors_overlap.safetensors",
        struct.pack("<Q", len(st_header)) + st_header.encode() + b"\x00" * 12,
        "safetensors overlapping tensors",
        "malformed",
    )
    keras_lambda = {
        "class_name": "Sequential",
        "config": {
            "layers": [
                {
                    "module": "keras.layers",
                    "class_name": "Lambda",
                    "config": {
                        "function": {"class_name": "__lambda__", "config": {"code": "YQ=="}}
                    },
                }
            ]
        },
    }
    add(
        "lambda.keras",
        _zip(
            {
                "config.json": json.dumps(keras_lambda).encode(),
                "metadata.json": b"{}",
                "model.weights.h5": b"\x00",
            }
        ),
        "Keras Lambda layer",
        "keras-lambda",
    )
    keras_custom = {
        "class_name": "Sequential",
        "config": {
            "layers": [{"module": "evil_pkg.layers", "class_name": "Backdoor", "config": {}}]
        },
    }
    add(
        "custom_object.keras",
        _zip({"config.json": json.dumps(keras_custom).encode(), "metadata.json": b"{}"}),
        "Keras object from outside Keras",
        "keras-custom-object",
    )
    out.extend(_malicious_formats(root, marker))
    return out


def _malicious_formats(root: Path, marker: Path) -> list[Sample]:
    """ONNX and skops samples (their libraries are installed with the test extra)."""
    out: list[Sample] = []
    folder = root / "malicious"
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:
        return out
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    w = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    w.data_location = TensorProto.EXTERNAL
    del w.float_data[:]
    w.external_data.add(key="location", value="../../../etc/passwd")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [w])
    path = folder / "external_data.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    out.append(Sample(path, True, "ONNX external data leaving the folder", "onnx-external-data"))
    custom = helper.make_node("Backdoor", ["x"], ["y"], domain="evil.ops")
    graph = helper.make_graph([custom], "g", [x], [y])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("evil.ops", 1)]
    )
    path = folder / "custom_op.bin"
    path.write_bytes(model.SerializeToString())
    out.append(Sample(path, True, "ONNX custom op domain, as .bin", "onnx-custom-op"))
    _ = onnx
    from sklearn.preprocessing import FunctionTransformer

    from mlwarden.models._persist import _skops_io

    transformer = FunctionTransformer(func=os.system).fit([[0.0]])
    path = folder / "function.skops"
    path.write_bytes(_skops_io().dumps(transformer))
    out.append(Sample(path, True, "skops file naming os.system", "dangerous-global"))
    return out


def _estimators() -> list[tuple[str, Any]]:
    """One fitted-able estimator per scikit-learn family, plus pipelines and meta-estimators."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import (
        AdaBoostClassifier,
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
        StackingClassifier,
        VotingClassifier,
    )
    from sklearn.gaussian_process import GaussianProcessClassifier
    from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    return [
        ("logistic", LogisticRegression(max_iter=500)),
        ("ridge", Ridge()),
        ("sgd", SGDClassifier(random_state=0)),
        ("tree", DecisionTreeClassifier(random_state=0)),
        ("forest", RandomForestClassifier(n_estimators=5, random_state=0)),
        ("extra_trees", ExtraTreesClassifier(n_estimators=5, random_state=0)),
        ("gradient_boosting", GradientBoostingClassifier(n_estimators=5, random_state=0)),
        ("hist_gradient_boosting", HistGradientBoostingClassifier(max_iter=5)),
        ("adaboost", AdaBoostClassifier(n_estimators=5, random_state=0)),
        ("svc", SVC(probability=True, random_state=0)),
        ("knn", KNeighborsClassifier()),
        ("naive_bayes", GaussianNB()),
        ("lda", LinearDiscriminantAnalysis()),
        ("mlp", MLPClassifier(hidden_layer_sizes=(5,), max_iter=50, random_state=0)),
        ("gaussian_process", GaussianProcessClassifier(random_state=0)),
        ("dummy", DummyClassifier()),
        ("kmeans", KMeans(n_clusters=2, n_init=2, random_state=0)),
        ("pca", PCA(n_components=2)),
        ("pipeline", Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())])),
        (
            "column_transformer",
            Pipeline(
                [
                    (
                        "cols",
                        ColumnTransformer(
                            [("scale", StandardScaler(), [0, 1])], remainder="passthrough"
                        ),
                    ),
                    ("clf", DecisionTreeClassifier(random_state=0)),
                ]
            ),
        ),
        ("calibrated", CalibratedClassifierCV(GaussianNB(), cv=3)),
        (
            "voting",
            VotingClassifier([("a", GaussianNB()), ("b", LogisticRegression())], voting="soft"),
        ),
        ("stacking", StackingClassifier([("a", GaussianNB())], cv=3)),
        ("one_vs_rest", OneVsRestClassifier(LogisticRegression())),
    ]


def _benign(root: Path) -> list[Sample]:
    import warnings

    import joblib
    import numpy as np
    from sklearn.datasets import make_classification

    folder = root / "benign"
    folder.mkdir(parents=True, exist_ok=True)
    x, y = make_classification(120, 5, n_informative=3, n_classes=3, random_state=0)
    rows = x[:20]
    out: list[Sample] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of the tiny fits
        fitted = [(name, est.fit(x, y)) for name, est in _estimators()]
    for i, (name, est) in enumerate(fitted):
        path = folder / f"{name}.pkl"
        path.write_bytes(pickle.dumps(est, protocol=(2, 4, 5)[i % 3]))
        out.append(Sample(path, False, f"pickled {name}", model=est, rows=rows, pickled=True))
        path = folder / f"{name}.joblib"
        joblib.dump(est, path, compress=3 if i % 4 == 0 else 0)
        out.append(Sample(path, False, f"joblib {name}", model=est, rows=rows, pickled=True))
    path = folder / "logistic_p0.pkl"
    path.write_bytes(pickle.dumps(fitted[0][1], protocol=0))
    out.append(
        Sample(path, False, "protocol 0 logistic", model=fitted[0][1], rows=rows, pickled=True)
    )
    arrays = {
        "floats.npy": np.arange(12.0).reshape(3, 4),
        "ints.npy": np.arange(7),
        "strings.npy": np.array(["a", "bc"]),
    }
    for name, arr in arrays.items():
        np.save(folder / name, arr)
        out.append(Sample(folder / name, False, f"NumPy {name}"))
    np.savez(folder / "arrays.npz", a=np.ones(3), b=np.zeros((2, 2)))
    out.append(Sample(folder / "arrays.npz", False, "NumPy .npz"))
    (folder / "array.pkl").write_bytes(pickle.dumps(np.linspace(0, 1, 50), protocol=5))
    out.append(Sample(folder / "array.pkl", False, "pickled ndarray", pickled=True))
    from mlwarden.models import dumps_model

    for name, est in fitted[:2]:
        (folder / f"{name}.skops").write_bytes(dumps_model(est))
        out.append(Sample(folder / f"{name}.skops", False, f"skops {name}"))
    out.extend(_benign_onnx(folder, fitted, x))
    out.extend(_benign_torch(folder))
    keras = {
        "class_name": "Sequential",
        "config": {
            "layers": [{"module": "keras.layers", "class_name": "Dense", "config": {"units": 2}}]
        },
    }
    (folder / "dense.keras").write_bytes(
        _zip(
            {
                "config.json": json.dumps(keras).encode(),
                "metadata.json": b"{}",
                "model.weights.h5": b"\x89HDF\r\n\x1a\n",
            }
        )
    )
    out.append(Sample(folder / "dense.keras", False, "Keras Dense model"))
    (folder / "legacy_tar.pt").write_bytes(_legacy_torch_tar())
    out.append(Sample(folder / "legacy_tar.pt", False, "legacy torch tar checkpoint"))
    return out


def _benign_onnx(folder: Path, fitted: list[tuple[str, Any]], x: Any) -> list[Sample]:
    try:
        from skl2onnx import to_onnx
    except ImportError:
        return []
    out = []
    for name, est in fitted[:5]:
        if name == "ridge":
            continue
        path = folder / f"{name}.onnx"
        path.write_bytes(to_onnx(est, x[:1].astype("float32")).SerializeToString())
        out.append(Sample(path, False, f"skl2onnx {name}"))
    return out


def _benign_torch(folder: Path) -> list[Sample]:
    out: list[Sample] = []
    try:
        import torch
    except ImportError:
        return out
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(2, 5)).sum().backward()
    opt.step()
    checkpoint = {
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "epoch": 3,
        "dtype": torch.float32,
        "device": torch.device("cpu"),
    }
    torch.save(net.state_dict(), folder / "state_dict.pt")
    torch.save(checkpoint, folder / "checkpoint.pth")
    torch.save(
        net.state_dict(), folder / "legacy_state_dict.pt", _use_new_zipfile_serialization=False
    )
    torch.save(
        {"half": torch.ones(3, dtype=torch.float16), "ints": torch.arange(4)},
        folder / "tensors.bin",
    )
    for name in ("state_dict.pt", "checkpoint.pth", "legacy_state_dict.pt", "tensors.bin"):
        out.append(Sample(folder / name, False, f"torch.save {name}", tags={"torch"}))
    try:
        from safetensors.torch import save_file
    except ImportError:
        return out
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, folder / "net.safetensors")
    out.append(Sample(folder / "net.safetensors", False, "safetensors", tags={"torch"}))
    return out


def build_corpus(root: Path, marker: Path) -> list[Sample]:
    """Write every malicious and benign sample under ``root``; ``marker`` must never appear."""
    return _malicious(root, marker) + _benign(root)


def _joblib_polyglot(marker: str) -> bytes:
    """A joblib file whose "array bytes" are opcodes that ``pickle.load`` would run.

    joblib reads them as a uint8 array; with the alignment padding removed, pickle.load reads
    them as a call of os.system right after the array wrapper.
    """
    import joblib
    import numpy as np

    payload = _c("os", "system") + b"(" + _v(f"touch {marker}") + b"tR0"
    buf = io.BytesIO()
    joblib.dump({"a": np.frombuffer(payload, dtype=np.uint8)}, buf)
    raw = buf.getvalue()
    key = b"\x8c\x1bnumpy_array_alignment_bytes\x94"
    at = raw.index(key) + len(key)
    assert raw[at : at + 2] == b"K\x10"
    pad = raw.index(payload) - (at + 4)  # after 'K\x10', 'u', 'b': the padding byte and bytes
    frames = [pos for op, _, pos in _genops_until(raw, at) if op == "FRAME"]
    edited = bytearray(raw[:at] + b"N" + raw[at + 2 : at + 4] + raw[at + 4 + pad :])
    length = struct.unpack_from("<Q", edited, frames[-1] + 1)[0]
    struct.pack_into("<Q", edited, frames[-1] + 1, length - 1)  # the frame lost one byte
    return bytes(edited)


def _genops_until(raw: bytes, end: int) -> list[tuple[str, Any, int]]:
    import pickletools

    out = []
    for op, arg, pos in pickletools.genops(raw):
        if pos is not None and pos >= end:
            break
        out.append((op.name, arg, pos or 0))
    return out


def _legacy_torch_tar(entry: bytes | None = None) -> bytes:
    """A pre-2017 torch.save tar: one float storage of 2 elements, one tensor viewing it."""

    def x(text: str) -> bytes:  # BINUNICODE
        return b"X" + struct.pack("<I", len(text)) + text.encode()

    storage_type = _c("torch", "FloatStorage")
    entry = entry or b"\x80\x02" + x("0") + x("cpu") + storage_type + b"\x87."
    storages = (
        pickle.dumps(1, protocol=2) + entry + struct.pack("<q", 2) + struct.pack("<2f", 1, 2)
        + pickle.dumps([], protocol=2)
    )  # fmt: skip
    tensor = b"\x80\x02" + x("t0") + x("0") + _c("torch", "FloatTensor") + b"\x87."
    tensors = (
        pickle.dumps(1, protocol=2) + tensor + struct.pack("<i", 1) + b"\x00" * 4
        + struct.pack("<qqq", 2, 1, 0)
    )  # fmt: skip
    main = b"\x80\x02}" + x("w") + x("t0") + b"Qs."
    return _tar(
        {
            "sys_info": pickle.dumps({"protocol_version": 1001}, protocol=2),
            "pickle": main,
            "tensors": tensors,
            "storages": storages,
        }
    )
