"""Zip, tar and compressed streams, opened recursively within depth, size and count limits.

Members are copied to spooled temporary files (in memory up to a few MiB, then on disk), so a
multi-GB archive never sits in memory; every byte unpacked counts against the policy's budget.
Zip local headers are compared with the central directory (tampered names are a known
scanner bypass) and member data may not overlap (overlapping-entry zip bombs).
"""

from __future__ import annotations

import bz2
import gzip
import io
import itertools
import lzma
import posixpath
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from typing import IO, Any

from mlwarden.errors import MlwardenError

__all__ = ["Budget", "LimitExceeded", "scan_tar", "scan_zip", "spool_decompressed"]

_SPOOL = 8 * 1024 * 1024
_LEGACY_TORCH = {"sys_info", "pickle", "storages", "tensors"}  # a pre-2017 torch.save tar
_CHUNK = 1 << 20
Emit = Callable[..., None]
# scan_member(stream, member name, depth, context) -> None
ScanMember = Callable[[IO[bytes], str, int, str], None]


class Budget:
    """Bytes unpacked so far for one top-level file, against the policy's limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


class LimitExceeded(MlwardenError):
    """Unpacking went past the byte budget."""


def _write(out: IO[bytes], chunk: bytes, budget: Budget) -> None:
    budget.used += len(chunk)
    if budget.used > budget.limit:
        raise LimitExceeded(f"more than {budget.limit} bytes unpacked")
    out.write(chunk)


def _copy(src: IO[bytes], budget: Budget) -> IO[bytes]:
    first = src.read(_CHUNK)
    if len(first) < _CHUNK:  # small members (most of them) stay in memory
        small = io.BytesIO()
        _write(small, first, budget)
        small.seek(0)
        return small
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL)  # noqa: SIM115 - returned
    try:
        _write(out, first, budget)
        while chunk := src.read(_CHUNK):
            _write(out, chunk, budget)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


def _copy_zlib(src: IO[bytes], budget: Budget) -> IO[bytes]:
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL)  # noqa: SIM115 - returned
    inflater = zlib.decompressobj()
    try:
        raw = src.read(_CHUNK)
        while raw and not inflater.eof:
            _write(out, inflater.decompress(raw, _CHUNK), budget)
            raw = inflater.unconsumed_tail or src.read(_CHUNK)
        _write(out, inflater.flush(), budget)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


def spool_decompressed(stream: IO[bytes], kind: str, budget: Budget) -> IO[bytes]:
    """Decompress a gzip, bz2, xz, lzma or zlib stream into a spooled file within the budget.

    Raises ``LimitExceeded`` past the budget and the decompressor's error on corrupt data.
    """
    stream.seek(0)
    if kind == "zlib":
        return _copy_zlib(stream, budget)
    source: Any
    if kind == "gzip":
        source = gzip.GzipFile(fileobj=stream)
    elif kind == "bz2":
        source = bz2.BZ2File(stream)
    else:
        source = lzma.LZMAFile(stream)  # noqa: SIM115 - closed just below
    with source:
        return _copy(source, budget)


def _bad_name(name: str) -> str | None:
    norm = posixpath.normpath(name.replace("\\", "/"))
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if norm == ".." or norm.startswith("../"):
        return "a path that leaves the extraction folder"
    return None


def _local_names(stream: IO[bytes], infos: list[zipfile.ZipInfo], emit: Emit) -> None:
    """Compare each local header with the central directory; find overlapping members."""
    spans = []
    size = stream.seek(0, 2)
    for info in infos:
        if not 0 <= info.header_offset < size:
            emit("malformed", "high", f"zip: {info.filename!r} starts at {info.header_offset}, "
                 f"outside the {size}-byte archive", member=info.filename)  # fmt: skip
            continue
        stream.seek(info.header_offset)
        header = stream.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            emit("malformed", "high", f"zip: no local header for {info.filename!r}",
                 member=info.filename, offset=info.header_offset)  # fmt: skip
            continue
        n = int.from_bytes(header[26:28], "little")
        m = int.from_bytes(header[28:30], "little")
        raw = stream.read(n)
        local = raw.decode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace")
        if local != info.orig_filename:
            emit(
                "tampered-zip-header",
                "high",
                f"zip: the local header names {local!r} but the central directory "
                f"{info.orig_filename!r}; readers disagree on what this member is",
                member=info.filename,
                offset=info.header_offset,
            )
        spans.append((info.header_offset, info.header_offset + 30 + n + m + info.compress_size,
                      info.filename))  # fmt: skip
    spans.sort()
    for (_, end, first), (start, _, second) in itertools.pairwise(spans):
        if start < end:
            emit("zip-bomb", "high", f"zip: members {first!r} and {second!r} share bytes "
                 "(an overlapping-entry zip bomb)", member=second, offset=start)  # fmt: skip


def scan_zip(
    stream: IO[bytes],
    prefix: str,
    depth: int,
    policy: Any,
    budget: Budget,
    emit: Emit,
    scan_member: ScanMember,
) -> str:
    """Scan every member of a zip; returns the kind of zip (torch, skops, keras, npz, zip)."""
    try:
        archive = zipfile.ZipFile(stream)
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        emit("malformed", "high", f"zip: cannot read the archive: {exc}", member=prefix or None)
        return "zip"
    names = [i.filename for i in infos]
    kind = _zip_kind(names)
    if len(infos) > policy.max_members:
        emit("archive-limits", "high", f"zip: {len(infos)} members, over the limit of "
             f"{policy.max_members}", member=prefix or None)  # fmt: skip
        return kind
    _local_names(stream, infos, emit)
    for info in infos:
        member = prefix + info.filename
        reason = _bad_name(info.filename)
        if reason:
            emit("path-traversal", "high", f"zip member name {info.filename!r} is {reason}",
                 member=member)  # fmt: skip
        if info.filename.endswith("/"):  # a folder (is_dir() fails on an empty name)
            continue
        if info.flag_bits & 0x1:
            emit("cannot-check", "medium", "zip: the member is encrypted", member=member)
            continue
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _CHUNK and ratio > policy.max_ratio:
            emit("zip-bomb", "high", f"zip: {info.file_size} bytes from {info.compress_size} "
                 f"(ratio {ratio:.0f}, limit {policy.max_ratio:g})", member=member)  # fmt: skip
            continue
        if _is_raw_data(kind, info.filename, names):
            continue
        try:
            with archive.open(info) as src:
                spooled = _copy(src, budget)
        except LimitExceeded as exc:
            emit("archive-limits", "high", f"zip: {exc}", member=member)
            return kind
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, RuntimeError) as exc:
            emit("malformed", "high", f"zip: cannot read the member: {exc}", member=member)
            continue
        with spooled:
            scan_member(spooled, member, depth + 1, kind)
    return kind


def _zip_kind(names: list[str]) -> str:
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and any(n.endswith("/data.pkl") for n in names):
        return "torch-zip"
    if "schema.json" in names:
        return "skops"
    if "config.json" in names and "metadata.json" in names:
        return "keras"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    return "zip"


def _is_raw_data(kind: str, name: str, names: list[str]) -> bool:
    """Members no loader unpickles: torch tensor storages, Keras weights."""
    if kind == "torch-zip":
        folder, _, leaf = name.rpartition("/")
        storage = folder.endswith("/data") and leaf.isdigit()
        return storage or name.endswith("/.data/serialization_id")
    return kind == "keras" and name == "model.weights.h5"


def scan_tar(
    stream: IO[bytes],
    prefix: str,
    depth: int,
    policy: Any,
    budget: Budget,
    emit: Emit,
    scan_member: ScanMember,
) -> None:
    """Scan every regular member of a tar; links out of the folder and devices are unsafe."""
    stream.seek(0)
    count = 0
    try:
        with tarfile.open(fileobj=stream, mode="r:") as archive:
            infos = []
            for info in archive:  # headers only, within the member limit
                infos.append(info)
                if len(infos) > policy.max_members:
                    break
            names = {i.name for i in infos}
            context = "torch-tar" if names >= _LEGACY_TORCH else "tar"
            for info in infos:
                count += 1
                member = prefix + info.name
                if count > policy.max_members:
                    emit("archive-limits", "high", f"tar: over {policy.max_members} members",
                         member=prefix or None)  # fmt: skip
                    return
                reason = _bad_name(info.name)
                if reason:
                    emit("path-traversal", "high", f"tar member name {info.name!r} is {reason}",
                         member=member)  # fmt: skip
                if info.issym() or info.islnk():
                    target = posixpath.join(posixpath.dirname(info.name), info.linkname)
                    if _bad_name(info.linkname if info.linkname.startswith("/") else target):
                        emit("path-traversal", "high", f"tar link {info.name!r} points to "
                             f"{info.linkname!r}, outside the archive", member=member)  # fmt: skip
                    continue
                if info.ischr() or info.isblk() or info.isfifo():
                    emit("path-traversal", "high", f"tar member {info.name!r} is a device or "
                         "pipe", member=member)  # fmt: skip
                    continue
                if not info.isfile():
                    continue
                src = archive.extractfile(info)
                if src is None:
                    continue
                try:
                    spooled = _copy(src, budget)
                except LimitExceeded as exc:
                    emit("archive-limits", "high", f"tar: {exc}", member=member)
                    return
                with spooled:
                    scan_member(spooled, member, depth + 1, context)
    except (tarfile.TarError, OSError, EOFError) as exc:
        emit("malformed", "high", f"tar: cannot read the archive: {exc}", member=prefix or None)
