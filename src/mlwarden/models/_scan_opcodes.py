"""Reading pickle opcodes: a bounded, buffered reader and one argument reader per kind.

Arguments are decoded without ``pickletools.genops``, so byte payloads of any size are skipped
by seeking instead of being read into memory.
"""

from __future__ import annotations

import codecs
import pickletools
from collections.abc import Callable
from typing import IO, Any

from mlwarden.errors import FormatError, MlwardenError

__all__ = [
    "DATA",
    "GET",
    "OPS",
    "OTHER",
    "PICKLE_OPCODES",
    "PUSH",
    "PUT",
    "Opaque",
    "PickleMalformed",
    "Reader",
]

_MAX_LINE = 1 << 16
_CHUNK = 1 << 16
_MAX_TEXT = 4096  # strings kept for resolving globals; longer ones are opaque


class PickleMalformed(MlwardenError):
    """The stream cannot be parsed past ``offset``; a loader would fail there too."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class Opaque:
    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what


class Reader:
    """Reads a binary stream through a small buffer, counting the offset.

    Payloads longer than the buffer are skipped by seeking, so memory stays bounded whatever
    the file's size.
    """

    def __init__(self, stream: IO[bytes], offset: int) -> None:
        self.stream = stream
        stream.seek(offset)
        self.base = offset
        self.buf = b""
        self.i = 0
        self.end = 0  # len(self.buf), kept as an attribute: read once per opcode

    @property
    def pos(self) -> int:
        return self.base + self.i

    def resync(self, pos: int) -> None:
        """Continue from ``pos`` after someone else read the stream."""
        self.stream.seek(pos)
        self.base, self.buf, self.i, self.end = pos, b"", 0, 0

    def clone(self) -> Reader:
        """A reader at the same place, sharing the buffer (readers seek before they read)."""
        twin = Reader.__new__(Reader)
        twin.stream, twin.base, twin.buf, twin.i, twin.end = (
            self.stream, self.base, self.buf, self.i, self.end
        )  # fmt: skip
        return twin

    def _fill(self, n: int) -> bool:
        rest = self.buf[self.i :]
        self.base += self.i
        self.stream.seek(self.base + len(rest))  # another reader may have moved the stream
        self.buf = rest + self.stream.read(max(_CHUNK, n - len(rest)))
        self.i = 0
        self.end = len(self.buf)
        return self.end >= n

    def byte(self) -> int | None:
        if self.i >= self.end and not self._fill(1):
            return None
        value = self.buf[self.i]
        self.i += 1
        return value

    def read(self, n: int) -> bytes:
        if n < 0:
            raise PickleMalformed(f"negative length {n}", self.pos)
        if self.i + n > self.end and not self._fill(n):
            left = self.end - self.i
            raise PickleMalformed(f"truncated: needed {n} bytes, {left} left", self.pos + left)
        i = self.i
        self.i = i + n
        return self.buf[i : i + n]

    def skip(self, n: int) -> None:
        if n < 0:
            raise PickleMalformed(f"negative length {n}", self.pos)
        if self.i + n <= self.end:
            self.i += n
            return
        target = self.pos + n
        end = self.stream.seek(0, 2)
        if target > end:
            raise PickleMalformed(f"truncated: needed {n} bytes, {end - self.pos} left", end)
        self.resync(target)

    def line(self) -> bytes:
        end = self.buf.find(b"\n", self.i)
        while end < 0:
            have = self.end - self.i
            if have > _MAX_LINE or not self._fill(have + 1):
                raise PickleMalformed("a text argument has no end of line", self.pos)
            end = self.buf.find(b"\n", self.i)
        data = self.buf[self.i : end]
        self.i = end + 1
        return data

    def uint(self, n: int, signed: bool = False) -> int:
        return int.from_bytes(self.read(n), "little", signed=signed)


def _text(reader: Reader, n: int, encoding: str) -> Any:
    if n > _MAX_TEXT:
        reader.skip(n)
        return Opaque(f"a {n}-byte string")
    raw = reader.read(n)
    try:
        return raw.decode(encoding, "surrogatepass")
    except UnicodeDecodeError as exc:
        raise PickleMalformed(f"a string is not valid {encoding}: {exc}", reader.pos) from exc


def _uint1(reader: Reader) -> int:
    i = reader.i
    if i < reader.end:  # the common case, inlined
        reader.i = i + 1
        return reader.buf[i]
    value = reader.byte()
    if value is None:
        raise PickleMalformed("truncated: needed 1 byte, 0 left", reader.pos)
    return value


def _sized(width: int, signed: bool = False) -> Callable[[Reader], int]:
    if width == 1:
        return _uint1
    return lambda reader: int.from_bytes(reader.read(width), "little", signed=signed)


def _payload(width: int) -> Callable[[Reader], Opaque]:
    def read(reader: Reader) -> Opaque:
        n = reader.uint(width)
        reader.skip(n)
        return Opaque(f"{n} bytes")

    return read


def _string(width: int, signed: bool, encoding: str) -> Callable[[Reader], Any]:
    return lambda reader: _text(reader, reader.uint(width, signed), encoding)


def _float8(reader: Reader) -> float:
    reader.skip(8)
    return 0.0


def _long(width: int) -> Callable[[Reader], Any]:
    def read(reader: Reader) -> Any:
        n = reader.uint(width, width == 4)
        if n < 0:
            raise PickleMalformed(f"negative length {n}", reader.pos)
        if n > 64:
            reader.skip(n)
            return Opaque("a long integer")
        return int.from_bytes(reader.read(n), "little", signed=True)

    return read


def _line(kind: str) -> Callable[[Reader], Any]:
    def read(reader: Reader) -> Any:
        line = reader.line()
        text_kind = kind
        if kind == "stringnl_noescape_pair":
            line = line + b" " + reader.line()
            text_kind = "stringnl_noescape"
        try:
            return _text_arg(text_kind, line)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PickleMalformed(f"bad {kind} argument {line[:40]!r}: {exc}", reader.pos) from exc

    return read


_ARG_READERS: dict[str, Callable[[Reader], Any]] = {
    "uint1": _sized(1),
    "uint2": _sized(2),
    "int4": _sized(4, True),
    "uint4": _sized(4),
    "uint8": _sized(8),
    "float8": _float8,
    "bytes1": _payload(1),
    "bytes4": _payload(4),
    "bytes8": _payload(8),
    "bytearray8": _payload(8),
    "string1": _string(1, False, "latin-1"),
    "string4": _string(4, True, "latin-1"),
    "unicodestring1": _string(1, False, "utf-8"),
    "unicodestring4": _string(4, False, "utf-8"),
    "unicodestring8": _string(8, False, "utf-8"),
    "long1": _long(1),
    "long4": _long(4),
    **{
        kind: _line(kind)
        for kind in (
            "stringnl",
            "stringnl_noescape",
            "stringnl_noescape_pair",
            "unicodestringnl",
            "decimalnl_short",
            "decimalnl_long",
            "floatnl",
        )
    },
}
# Opcodes that only build containers and simple values.
_DATA_OPS = frozenset(
    {
        "EMPTY_DICT", "EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_SET", "TUPLE1", "TUPLE2", "TUPLE3",
        "NONE", "NEWTRUE", "NEWFALSE", "TUPLE", "LIST", "FROZENSET", "DICT", "APPEND", "APPENDS",
        "ADDITEMS", "SETITEM", "SETITEMS", "NEXT_BUFFER", "READONLY_BUFFER",
    }
)  # fmt: skip
# Opcodes that push their argument as it is.
_CONSTANTS = frozenset(
    {
        "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING",
        "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "UNICODE",
        "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "FLOAT", "BINFLOAT",
    }
)  # fmt: skip


PUSH, DATA, PUT, GET, OTHER = range(5)
PICKLE_OPCODES = frozenset(op.code.encode("latin-1")[0] for op in pickletools.opcodes)


def _group(name: str) -> int:
    if name in _CONSTANTS:
        return PUSH
    if name in _DATA_OPS:
        return DATA
    if name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
        return PUT
    return GET if name in ("BINGET", "LONG_BINGET", "GET") else OTHER


# opcode byte -> (name, argument reader, group)
OPS: dict[int, tuple[str, Callable[[Reader], Any] | None, int]] = {
    op.code.encode("latin-1")[0]: (
        op.name,
        _ARG_READERS[op.arg.name] if op.arg else None,
        _group(op.name),
    )
    for op in pickletools.opcodes
}


def _text_arg(kind: str, line: bytes) -> Any:
    if kind == "stringnl_noescape":
        return line.decode("utf-8")
    if kind == "stringnl":
        text = line.decode("latin-1")
        if len(text) < 2 or text[0] != text[-1] or text[0] not in "'\"":
            raise FormatError("no matching quotes")
        return codecs.escape_decode(text[1:-1].encode("latin-1"))[0].decode("latin-1")
    if kind == "unicodestringnl":
        return line.decode("raw-unicode-escape")
    if kind == "decimalnl_short":
        if line in (b"00", b"01"):
            return line == b"01"
        return int(line)
    if kind == "decimalnl_long":
        return int(line.rstrip(b"L"))
    if kind == "floatnl":
        return float(line)
    raise FormatError(f"unknown argument kind {kind}")
