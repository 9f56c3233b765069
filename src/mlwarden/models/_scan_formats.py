"""Checks for the non-pickle model formats: NumPy, safetensors, ONNX, skops and Keras.

Each reads structure only (headers, protobuf fields, JSON configs) and never runs anything a
file carries. A format whose reader is an optional extra that is missing is reported as
"cannot check", which is unsafe (fail-closed).
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import posixpath
from collections.abc import Callable, Iterator
from typing import IO, Any

from mlwarden.errors import FormatError

__all__ = [
    "check_keras_config",
    "looks_like_onnx",
    "npy_header",
    "scan_hdf5",
    "scan_onnx",
    "scan_safetensors",
    "scan_skops",
]

Emit = Callable[..., None]

_SAFETENSORS_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "F4": 1, "F6_E2M3": 1,
    "F6_E3M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}  # fmt: skip
_MAX_HEADER = 100 * 1024 * 1024
# ONNX operator domains served by onnxruntime itself; any other domain needs a custom library.
_ONNX_DOMAINS = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training", "com.microsoft"}
)
# ModelProto's top-level fields (number -> wire type): enough to recognise ONNX by content.
_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}


def npy_header(stream: IO[bytes]) -> tuple[dict[str, Any], int]:
    """The header dict of a ``.npy`` stream and the offset of its data.

    Raises ``ValueError`` naming what is wrong.
    """
    magic = stream.read(8)
    if len(magic) < 8 or not magic.startswith(b"\x93NUMPY"):
        raise FormatError("no NumPy magic")
    major = magic[6]
    size_len = 2 if major == 1 else 4
    if major not in (1, 2, 3):
        raise FormatError(f"unknown .npy version {major}")
    length = int.from_bytes(stream.read(size_len), "little")
    if length > 1 << 20:
        raise FormatError(f"header of {length} bytes")
    raw = stream.read(length)
    if len(raw) != length:
        raise FormatError("truncated header")
    header = ast.literal_eval(raw.decode("utf-8" if major == 3 else "latin-1"))
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise FormatError("header is not a dict of descr, fortran_order and shape")
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise FormatError(f"bad shape {shape!r}")
    return header, 8 + size_len + length


def descr_has_objects(descr: Any) -> bool:
    """Whether a NumPy descr (string or structured list) holds Python objects."""
    if isinstance(descr, str):
        return descr.lstrip("<>|=").startswith("O")
    if isinstance(descr, list | tuple):
        return any(descr_has_objects(part) for part in descr)
    return False


def descr_itemsize(descr: Any) -> int | None:
    """Bytes per item of a simple descr like ``<f8`` or ``<U5``; None for structured ones."""
    if not isinstance(descr, str):
        return None
    code = descr.lstrip("<>|=")
    digits = "".join(ch for ch in code[1:].split("[")[0] if ch.isdigit())
    if not code or not digits:
        return None
    return int(digits) * (4 if code[0] == "U" else 1)


def scan_safetensors(stream: IO[bytes], size: int, emit: Emit) -> None:
    """Header length, JSON sanity, dtypes, shapes, offsets inside the file, no overlap."""

    def bad(message: str, offset: int = 0) -> None:
        emit("malformed", "high", f"safetensors: {message}", offset=offset)

    length = int.from_bytes(stream.read(8), "little")
    if length > min(size - 8, _MAX_HEADER):
        bad(f"header length {length} exceeds the file ({size} bytes) or 100 MiB")
        return
    raw = stream.read(length)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        bad(f"header is not a JSON object: {exc}", 8)
        return
    if not isinstance(header, dict):
        bad("header is not a JSON object", 8)
        return
    data_size = size - 8 - length
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                bad("__metadata__ must map strings to strings", 8)
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            bad(f"tensor {name!r}: expected dtype, shape and data_offsets", 8)
            continue
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _SAFETENSORS_DTYPES:
            bad(f"tensor {name!r}: unknown dtype {dtype!r}", 8)
            continue
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            bad(f"tensor {name!r}: shape {shape!r} is not a list of sizes", 8)
            continue
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_size
        ):
            bad(f"tensor {name!r}: data_offsets {offsets!r} outside the {data_size} data bytes", 8)
            continue
        if offsets[1] - offsets[0] != math.prod(shape) * _SAFETENSORS_DTYPES[dtype]:
            bad(f"tensor {name!r}: {offsets[1] - offsets[0]} bytes for shape {shape} {dtype}", 8)
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    for (_, end, first), (start, _, second) in itertools.pairwise(spans):
        if start < end:
            bad(f"tensors {first!r} and {second!r} overlap", 8 + length + start)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise FormatError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _varint(stream: IO[bytes]) -> int | None:
    shift = result = 0
    while shift < 70:
        b = stream.read(1)
        if not b:
            return None
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
    return None


def looks_like_onnx(stream: IO[bytes], size: int) -> bool:
    """Whether the stream parses as protobuf with only ModelProto fields and holds a graph."""
    stream.seek(0)
    seen_graph = False
    pos = 0
    while pos < size:
        key = _varint(stream)
        if key is None:
            return False
        field, wire = key >> 3, key & 7
        if _ONNX_FIELDS.get(field) != wire:
            return False
        value = _varint(stream)
        if value is None:
            return False
        if wire == 2:
            if stream.tell() + value > size:
                return False
            stream.seek(value, 1)
        seen_graph |= field == 7
        pos = stream.tell()
    return seen_graph and pos == size


def scan_onnx(stream: IO[bytes], emit: Emit, allowed_domains: set[str]) -> None:
    """External data must stay inside the model's folder; operators only in standard domains."""
    try:
        import onnx
    except ImportError:
        emit(
            "cannot-check",
            "medium",
            "ONNX file, but the onnx package is not installed to check it "
            "(pip install 'mlwarden[onnx]' onnx); treated as unsafe",
        )
        return
    stream.seek(0)
    try:
        model = onnx.load_model_from_string(stream.read())
    except Exception as exc:  # protobuf raises DecodeError and others
        emit("malformed", "high", f"ONNX: cannot parse the model: {exc}")
        return
    local = {(f.domain, f.name) for f in model.functions}
    for tensor in _onnx_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        where = {e.key: e.value for e in tensor.external_data}.get("location", "")
        norm = posixpath.normpath(where.replace("\\", "/"))
        if not where or norm.startswith(("/", "../")) or norm == ".." or ":" in where:
            emit(
                "onnx-external-data",
                "high",
                f"tensor {tensor.name!r} reads external data from {where!r}, outside the "
                "model's folder",
            )
    for node in _onnx_nodes(model.graph, model.functions):
        if node.domain in _ONNX_DOMAINS or node.domain in allowed_domains:
            continue
        if (node.domain, node.op_type) in local:
            continue
        emit(
            "onnx-custom-op",
            "high",
            f"node {node.name or node.op_type!r} uses operator {node.op_type!r} from custom "
            f"domain {node.domain!r}, which needs a native custom-op library to run",
        )


def _onnx_graphs(graph: Any) -> Iterator[Any]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _onnx_graphs(attr.g)
            for sub in attr.graphs:
                yield from _onnx_graphs(sub)


def _onnx_tensors(graph: Any) -> Iterator[Any]:
    for g in _onnx_graphs(graph):
        yield from g.initializer
        for node in g.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors


def _onnx_nodes(graph: Any, functions: Any) -> Iterator[Any]:
    for g in _onnx_graphs(graph):
        yield from g.node
    for function in functions:
        yield from function.node


def check_keras_config(config: Any, emit: Emit, member: str | None = None) -> None:
    """Lambda layers (marshalled Python bytecode) and classes from outside Keras."""
    for node in _json_dicts(config):
        cls = node.get("class_name")
        if cls in ("Lambda", "TFOpLambda") or "function_type" in node.get("config", {}):
            emit(
                "keras-lambda",
                "critical",
                f"Keras {cls} layer: it carries Python code that runs when the model loads",
                member=member,
            )
        module = node.get("module")
        if isinstance(module, str) and isinstance(cls, str) and not module.startswith("keras"):
            emit(
                "keras-custom-object",
                "high",
                f"Keras object {module}.{cls} comes from outside Keras; loading imports it",
                member=member,
                global_name=f"{module}.{cls}",
            )


def _json_dicts(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _json_dicts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_dicts(item)


def scan_hdf5(stream: IO[bytes], emit: Emit) -> None:
    """A Keras HDF5 model: its ``model_config`` attribute, read with h5py when installed."""
    try:
        import h5py
    except ImportError:
        emit(
            "cannot-check",
            "medium",
            "HDF5 file (a Keras .h5 model can hold Lambda layers), but h5py is not installed "
            "to check it; treated as unsafe",
        )
        return
    stream.seek(0)
    try:
        with h5py.File(stream, "r") as h5:
            raw = h5.attrs.get("model_config")
    except Exception as exc:  # h5py raises OSError and others on malformed files
        emit("malformed", "high", f"HDF5: cannot read the file: {exc}")
        return
    if raw is None:
        return
    text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    try:
        check_keras_config(json.loads(text), emit)
    except ValueError as exc:
        emit("malformed", "high", f"HDF5: model_config is not JSON: {exc}")


def scan_skops(
    data: bytes, emit: Emit, allowed: frozenset[str], dangerous: Callable[[str], str | None]
) -> None:
    """Types a skops file would construct that neither skops nor the allowlist trusts."""
    from mlwarden.models._persist import _skops_io

    try:
        found = _skops_io().get_untrusted_types(data=data)
    except Exception as exc:  # skops raises plain errors on malformed files
        emit("malformed", "high", f"skops: cannot read the schema: {exc}")
        return
    for name in sorted(found):
        reason = dangerous(name)
        if reason is not None:
            emit(
                "dangerous-global",
                "critical",
                f"skops type {name}, which {reason}",
                global_name=name,
            )
        elif name not in allowed:
            emit(
                "global-not-allowed",
                "high",
                f"skops type {name} is trusted neither by skops nor by the allowlist",
                global_name=name,
            )
