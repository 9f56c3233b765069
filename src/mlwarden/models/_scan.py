"""``scan_file`` and ``scan_paths``: find a model file's format by content and check it statically.

The format comes from magic bytes and structure, never from the extension, so a pickle named
``weights.txt`` is scanned as a pickle. Nothing from a file is imported or called.
"""

from __future__ import annotations

import contextlib
import json
import logging
import lzma
import os
import stat
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from mlwarden.errors import DataError
from mlwarden.models._scan_allowlist import allowed_globals, dangerous_reason
from mlwarden.models._scan_archives import (
    Budget,
    LimitExceeded,
    scan_tar,
    scan_zip,
    spool_decompressed,
)
from mlwarden.models._scan_formats import (
    check_keras_config,
    descr_has_objects,
    descr_itemsize,
    looks_like_onnx,
    npy_header,
    scan_hdf5,
    scan_onnx,
    scan_safetensors,
    scan_skops,
)
from mlwarden.models._scan_pickle import PICKLE_OPCODES, PickleMalformed, PickleWalker
from mlwarden.models._scan_report import Finding, ScanPolicy, ScanReport, Severity
from mlwarden.models._scan_torch import legacy_storages, legacy_tar_member

__all__ = ["scan_file", "scan_paths"]

logger = logging.getLogger(__name__)

_MAX_PICKLES = 64


class _Scan:
    """One top-level file's scan: its findings, formats and budget."""

    def __init__(self, path: Path, policy: ScanPolicy) -> None:
        self.path = path
        self.policy = policy
        self.extra = frozenset(policy.allow_globals)
        self.findings: list[Finding] = []
        self.formats: list[str] = []
        self.globals: set[str] = set()
        self.budget = Budget(policy.max_unpacked_bytes)

    def emitter(self, member: str | None, base: int = 0) -> Any:
        def emit(rule: str, severity: Severity, message: str, **where: Any) -> None:
            where.setdefault("member", member)
            if where.get("offset") is not None:
                where["offset"] += base
            if "global_name" in where:
                where["global"] = where.pop("global_name")
            self.findings.append(Finding(rule=rule, severity=severity, message=message, **where))

        return emit

    # -- dispatch ---------------------------------------------------------------------------

    def stream(self, stream: IO[bytes], member: str | None, depth: int, context: str = "") -> None:
        size = stream.seek(0, 2)
        stream.seek(0)
        head = stream.read(512)
        stream.seek(0)
        emit = self.emitter(member)
        if context == "keras" and member is not None and member.rsplit("/", 1)[-1] == "config.json":
            self.formats.append(f"{member}: keras-config")
            try:
                check_keras_config(json.loads(stream.read()), emit, member)
            except (ValueError, RecursionError) as exc:
                emit("malformed", "high", f"Keras config.json is not JSON: {exc}")
            return
        leaf = (member or "").rsplit("/", 1)[-1]
        if context == "torch-tar" and leaf in ("storages", "tensors"):
            self.formats.append(f"{member}: torch-legacy-{leaf}")
            walker = PickleWalker(emit, self.extra)
            legacy_tar_member(stream, leaf, size, walker, emit)
            self.globals |= walker.globals_seen
            return
        kind = _detect(head, size)
        if kind == "unknown" and size and looks_like_onnx(stream, size):
            kind = "onnx"
        self.formats.append(f"{member}: {kind}" if member else kind)
        if kind not in ("pickle", "unknown", "empty") and head[0] in _VIEW_FIRST:
            self._pickle_view(stream, member, kind)
        if depth >= self.policy.max_depth and kind in _NESTED:
            level = depth + 1
            emit("archive-limits", "high", f"{kind} at nesting level {level}, over the limit of "
                 f"{self.policy.max_depth}")  # fmt: skip
            return
        if kind in _COMPRESSED:
            self._decompress(stream, kind, member, depth)
        elif kind == "zip":
            prefix = f"{member}/" if member else ""
            zkind = scan_zip(stream, prefix, depth, self.policy, self.budget, emit, self.member)
            self.formats[-1] = f"{member}: {zkind}" if member else zkind
            if zkind == "skops":
                stream.seek(0)
                scan_skops(stream.read(), emit, allowed_globals() | self.extra, _dangerous_name)
        elif kind == "tar":
            scan_tar(stream, f"{member}/" if member else "", depth, self.policy, self.budget,
                     emit, self.member)  # fmt: skip
        elif kind == "pickle":
            self._pickles(stream, member, size)
        elif kind == "npy":
            self._npy(stream, member, size)
        elif kind == "safetensors":
            scan_safetensors(stream, size, emit)
        elif kind == "onnx":
            scan_onnx(stream, emit, set(self.policy.allow_custom_onnx_domains))
        elif kind == "hdf5":
            if context == "keras":  # the weights of a .keras zip: arrays only
                return
            scan_hdf5(stream, emit)
        elif kind == "unknown":
            self._unknown(stream, member, size, head)

    def member(self, stream: IO[bytes], member: str, depth: int, context: str) -> None:
        self.stream(stream, member, depth, context)

    def checked(self, stream: IO[bytes]) -> None:
        """Scan the top-level stream; a failure of the scanner itself makes the file unsafe."""
        try:
            self.stream(stream, None, 0)
        except (
            OSError,
            ValueError,
            LookupError,
            TypeError,
            ArithmeticError,
            RuntimeError,
            EOFError,
        ) as exc:
            logger.warning("scanner error on %s", self.path, exc_info=True)
            self.emitter(None)(
                "scanner-error",
                "high",
                f"the scan could not finish ({type(exc).__name__}: {exc}); treated as unsafe",
            )

    def _decompress(self, stream: IO[bytes], kind: str, member: str | None, depth: int) -> None:
        emit = self.emitter(member)
        try:
            inner = spool_decompressed(stream, kind, self.budget)
        except LimitExceeded as exc:
            emit("archive-limits", "high", f"{kind}: {exc}")
            return
        except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as exc:
            emit("malformed", "high", f"{kind}: cannot decompress: {exc}")
            return
        with inner:
            self.stream(inner, f"{member or ''}[{kind}]", depth + 1)

    # -- pickles ----------------------------------------------------------------------------

    def _pickles(self, stream: IO[bytes], member: str | None, size: int) -> None:
        """Walk every pickle in the stream, as a loader that keeps reading would run them."""
        emit = self.emitter(member)
        walker = PickleWalker(emit, self.extra)
        offset = count = 0
        legacy = False
        try:
            while offset < size:
                count += 1
                if count > _MAX_PICKLES:
                    emit("malformed", "high", f"more than {_MAX_PICKLES} pickles in one file",
                         offset=offset)  # fmt: skip
                    break
                stream.seek(offset)
                value, offset = walker.walk(stream, offset)
                if count == 1 and walker.is_torch_legacy_magic(value):
                    legacy = True
                if legacy and count == 5:
                    legacy_storages(stream, value, offset, size, walker, emit)
                    break
                if count == 1 and offset < size and not legacy:
                    emit("appended-pickle", "info", "more data follows the first pickle's STOP; "
                         "it is scanned as further pickles", offset=offset)  # fmt: skip
        except PickleMalformed as exc:
            after = "" if count == 1 else f" (pickle {count} in the file)"
            emit("malformed", "high", f"cannot be parsed to the end{after}: {exc}; a loader "
                 "runs everything before this point", offset=exc.offset)  # fmt: skip
        self.globals |= walker.globals_seen

    # -- NumPy and what matches nothing -----------------------------------------------------

    def _npy(self, stream: IO[bytes], member: str | None, size: int) -> None:
        emit = self.emitter(member)
        try:
            header, start = npy_header(stream)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            emit("malformed", "high", f"npy: bad header: {exc}")
            return
        if descr_has_objects(header["descr"]):
            emit("npy-object-array", "info", "object array: its data is a pickle (np.load needs "
                 "allow_pickle=True); scanned as one", offset=start)  # fmt: skip
            self.formats.append(f"{member or ''}@{start}: pickle")
            walker = PickleWalker(self.emitter(member), self.extra)
            try:
                walker.walk(stream, start)
            except PickleMalformed as exc:
                emit("malformed", "high", f"npy object data cannot be parsed: {exc}",
                     offset=exc.offset)  # fmt: skip
            self.globals |= walker.globals_seen
            return
        itemsize = descr_itemsize(header["descr"])
        if itemsize is not None:
            count = 1
            for dim in header["shape"]:
                count *= dim
            if start + count * itemsize != size:
                emit("malformed", "high", f"npy: {size - start} data bytes where the header "
                     f"says {count * itemsize}", offset=start)  # fmt: skip

    def _pickle_view(self, stream: IO[bytes], member: str | None, kind: str) -> None:
        """A file of another format whose first bytes are also opcodes (a tar's first member
        name, say) runs them under ``pickle.load``: dangerous globals there are unsafe."""
        emit = self.emitter(member)

        def viewed(rule: str, severity: Severity, message: str, **where: Any) -> None:
            if rule in ("dangerous-global", "extension-registry"):
                emit(rule, severity, f"{message} (the {kind} file's bytes read as a pickle)",
                     **where)  # fmt: skip

        walker = PickleWalker(viewed, self.extra)
        with contextlib.suppress(PickleMalformed):  # where pickle.load stops
            walker.walk(stream, 0)
        stream.seek(0)

    def _unknown(self, stream: IO[bytes], member: str | None, size: int, head: bytes) -> None:
        """Try the bytes as a protocol 0/1 pickle (no PROTO opcode); else report the format."""
        trial: list[Finding] = []
        saved, self.findings = self.findings, trial
        walker = PickleWalker(self.emitter(member), self.extra)
        stream.seek(0)
        try:
            walker.walk(stream, 0)
            parsed = True
        except PickleMalformed:
            parsed = False
        self.findings = saved
        if parsed or walker.globals_seen or trial:
            self.formats[-1] = f"{member}: pickle" if member else "pickle"
            self._pickles(stream, member, size)
            return
        emit = self.emitter(member)
        if _is_text(head):
            emit("not-a-model", "info", "text, not a model format")
            self.formats[-1] = f"{member}: text" if member else "text"
        else:
            emit("cannot-check", "medium", "not a recognised model format; cannot check it")


_COMPRESSED = frozenset({"gzip", "bz2", "xz", "lzma", "zlib"})
# First bytes after which pickle.load reads on: any opcode but PERSID and BINPERSID ("PK" of a
# zip), which plain pickle.load refuses at once.
_VIEW_FIRST = PICKLE_OPCODES - {ord("P"), ord("Q")}
_NESTED = _COMPRESSED | {"zip", "tar"}


def _dangerous_name(name: str) -> str | None:
    module, _, attr = name.rpartition(".")
    return dangerous_reason(module, attr)


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # the head may end inside a multi-byte character
        if exc.start < len(head) - 3:
            return False
        text = head[: exc.start].decode("utf-8")
    text = text.replace("\n", "").replace("\r", "").replace("\t", "")
    return bool(text) and text.isprintable()


def _detect(head: bytes, size: int) -> str:
    if size == 0:
        return "empty"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return "zip"
    if head[257:262] == b"ustar":
        return "tar"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:3] == b"BZh":
        return "bz2"
    if head[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if head[:3] == b"\x5d\x00\x00":
        return "lzma"
    if len(head) > 1 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "hdf5"
    if head[:1] == b"\x80":  # PROTO: a pickle, whatever follows
        return "pickle"
    if len(head) >= 10 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    return "unknown"


def scan_file(path: str | os.PathLike[str], policy: ScanPolicy | None = None) -> ScanReport:
    """Scan one file statically and return its report (verdict ``safe`` or ``unsafe``)."""
    policy = policy or ScanPolicy()
    path = Path(path)
    state = _Scan(path, policy)
    size = 0
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):  # a pipe or device never ends or changes under the scan
            state.formats.append("not-a-file")
            state.emitter(None)("cannot-check", "medium", "not a regular file; not read")
        else:
            with path.open("rb") as stream:
                size = stream.seek(0, 2)
                stream.seek(0)
                state.checked(stream)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return ScanReport(
        file=str(path),
        format=state.formats[0] if state.formats else "unknown",
        formats=state.formats,
        size=size,
        findings=state.findings,
        globals=sorted(state.globals),
    )


def _walk(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    yield Path(root) / name
        else:
            yield path


def scan_paths(
    paths: Iterable[str | os.PathLike[str]], policy: ScanPolicy | None = None
) -> list[ScanReport]:
    """Scan files, walking directories (sorted); one report per file."""
    return [scan_file(path, policy) for path in _walk(paths)]
