"""The legacy torch.save formats: pickles interleaved with raw tensor bytes.

Before zip checkpoints (torch 1.6), ``torch.save`` wrote five pickles and then each storage's
raw bytes; older still, a tar of ``sys_info``, ``pickle``, ``storages`` and ``tensors``, the last
two again pickles with raw bytes between them. Every pickle is walked (its globals checked) and
the raw bytes are stepped over by the sizes the file gives, so nothing is left unread.
"""

from __future__ import annotations

from typing import IO, Any

from mlwarden.models._scan_opcodes import PickleMalformed
from mlwarden.models._scan_pickle import Emit, PickleWalker

__all__ = ["legacy_storages", "legacy_tar_member"]

# Bytes per element of the storage classes legacy files name (torch.FloatStorage...).
_ELEMENT = {
    "Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2,
    "Char": 1, "Byte": 1, "Bool": 1, "ComplexFloat": 8, "ComplexDouble": 16, "Untyped": 1,
}  # fmt: skip
_MAX_COUNT = 1 << 24


def _element_size(storage_type: Any) -> int:
    name = getattr(storage_type, "full", "")
    if not name.startswith("torch.") or not name.endswith("Storage"):
        return 0
    return _ELEMENT.get(name.rsplit(".", 1)[-1][: -len("Storage")], 0)


def _u(stream: IO[bytes], offset: int, width: int, signed: bool = False) -> int:
    stream.seek(offset)
    raw = stream.read(width)
    if len(raw) != width:
        raise PickleMalformed("truncated between pickles", offset)
    return int.from_bytes(raw, "little", signed=signed)


def legacy_storages(
    stream: IO[bytes], keys: Any, offset: int, size: int, walker: PickleWalker, emit: Emit
) -> None:
    """Step over the raw storages a pre-zip ``torch.save`` writes after its five pickles."""
    element: dict[str, int] = {}
    for pid in walker.persistent_ids:
        if isinstance(pid, tuple) and len(pid) >= 3 and isinstance(pid[2], str):
            element[pid[2]] = _element_size(pid[1])
    if not isinstance(keys, list) or not all(element.get(k) for k in keys):
        emit("malformed", "high", "legacy torch file: the storage list cannot be read",
             offset=offset)  # fmt: skip
        return
    try:
        for key in keys:
            offset += 8 + _u(stream, offset, 8) * element[key]
    except PickleMalformed as exc:
        emit("malformed", "high", f"legacy torch file: {exc}", offset=exc.offset)
        return
    if offset != size:
        emit("malformed", "high", f"legacy torch file: {size - offset} bytes after the "
             "storages do not belong to it", offset=min(offset, size))  # fmt: skip


def legacy_tar_member(
    stream: IO[bytes], name: str, size: int, walker: PickleWalker, emit: Emit
) -> None:
    """Walk the ``storages`` or ``tensors`` member of a legacy torch tar to its last byte."""
    try:
        count, offset = walker.walk(stream, 0)
        if not isinstance(count, int) or not 0 <= count <= _MAX_COUNT:
            raise PickleMalformed(f"{name}: the count {count!r} is not a number of entries", 0)
        for _ in range(count):
            entry, offset = walker.walk(stream, offset)
            if name == "storages":
                width = (
                    _element_size(entry[2]) if isinstance(entry, tuple) and len(entry) == 3 else 0
                )
                if not width:
                    raise PickleMalformed("storages: an entry without a storage type", offset)
                offset += 8 + _u(stream, offset, 8) * width
            else:
                ndim = _u(stream, offset, 4, signed=True)
                if not 0 <= ndim <= 64:
                    raise PickleMalformed(f"tensors: {ndim} dimensions", offset)
                offset += 4 + 4 + 16 * ndim + 8
        if name == "storages":  # the views of shared storages
            _, offset = walker.walk(stream, offset)
    except PickleMalformed as exc:
        emit("malformed", "high", f"legacy torch {name}: cannot be parsed to the end: {exc}",
             offset=exc.offset)  # fmt: skip
        return
    if offset != size:
        emit("malformed", "high", f"legacy torch {name}: {size - offset} bytes that belong to "
             "no entry", offset=min(offset, size))  # fmt: skip
