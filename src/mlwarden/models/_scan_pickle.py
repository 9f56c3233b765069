"""Static pickle analysis: walk the opcodes with a symbolic stack and memo, never executing.

Every global a stream references (GLOBAL, INST, STACK_GLOBAL resolved through the memo) is
checked against the allowlist, since merely resolving it imports its module. Each call
(REDUCE, NEWOBJ, OBJ, INST) is traced to the global it calls; calling anything computed
(a getattr result, a string built at load time) is refused. Large byte payloads are skipped
by seeking, so memory stays bounded. joblib's raw array bytes, written between opcodes after
each ``NumpyArrayWrapper``, are skipped by the size the wrapper's shape and dtype give.
"""

from __future__ import annotations

import codecs
import pickle
import pickletools
from collections.abc import Callable
from typing import IO, Any

from mlwarden.models._scan_allowlist import classify_global, dangerous_reason, normalised_name

__all__ = ["PickleMalformed", "PickleWalker"]

_OPS: dict[int, pickletools.OpcodeInfo] = {
    op.code.encode("latin-1")[0]: op for op in pickletools.opcodes
}
_MAX_LINE = 1 << 16
_MAX_TEXT = 4096  # strings kept for resolving globals; longer ones are opaque
_MAX_ITEMS = 512  # items kept per container
_JOBLIB_WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class PickleMalformed(Exception):
    """The stream cannot be parsed past ``offset``; a loader would fail there too."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class _Global:
    __slots__ = ("full", "status")

    def __init__(self, full: str, status: str) -> None:
        self.full = full
        self.status = status


class _Call:
    """The result of calling ``func`` (a global or something computed) with ``args``."""

    __slots__ = ("args", "func", "state")

    def __init__(self, func: Any, args: Any) -> None:
        self.func = func
        self.args = args
        self.state: Any = None


class _Opaque:
    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what


Emit = Callable[..., None]


class _Reader:
    """Reads a binary stream, counting the offset; big payloads are skipped, not read."""

    def __init__(self, stream: IO[bytes], offset: int) -> None:
        self.stream = stream
        self.pos = offset
        self.seekable = stream.seekable()

    def read(self, n: int) -> bytes:
        data = self.stream.read(n)
        if len(data) != n:
            raise PickleMalformed(
                f"truncated: needed {n} bytes, {len(data)} left", self.pos + len(data)
            )
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        if n < 0:
            raise PickleMalformed(f"negative length {n}", self.pos)
        if self.seekable and n > 65536:
            here = self.stream.tell()
            end = self.stream.seek(0, 2)
            if end - here < n:
                raise PickleMalformed(f"truncated: needed {n} bytes, {end - here} left", end)
            self.stream.seek(here + n)
            self.pos += n
            return
        left = n
        while left:
            chunk = self.stream.read(min(left, 1 << 20))
            if not chunk:
                raise PickleMalformed(f"truncated: needed {left} more bytes", self.pos)
            left -= len(chunk)
            self.pos += len(chunk)

    def line(self) -> bytes:
        data = self.stream.readline(_MAX_LINE)
        if not data.endswith(b"\n"):
            raise PickleMalformed("a text argument has no end of line", self.pos + len(data))
        self.pos += len(data)
        return data[:-1]

    def uint(self, n: int, signed: bool = False) -> int:
        return int.from_bytes(self.read(n), "little", signed=signed)


def _text(reader: _Reader, n: int, encoding: str) -> Any:
    if n > _MAX_TEXT:
        reader.skip(n)
        return _Opaque(f"a {n}-byte string")
    raw = reader.read(n)
    try:
        return raw.decode(encoding, "surrogatepass")
    except UnicodeDecodeError as exc:
        raise PickleMalformed(f"a string is not valid {encoding}: {exc}", reader.pos) from exc


def _read_arg(reader: _Reader, kind: str) -> Any:
    if kind == "uint1":
        return reader.uint(1)
    if kind == "uint2":
        return reader.uint(2)
    if kind == "int4":
        return reader.uint(4, signed=True)
    if kind in ("uint4", "uint8"):
        return reader.uint(4 if kind == "uint4" else 8)
    if kind == "float8":
        reader.skip(8)
        return 0.0
    if kind in ("bytes1", "bytes4", "bytes8", "bytearray8"):
        n = reader.uint({"bytes1": 1, "bytes4": 4}.get(kind, 8))
        reader.skip(n)
        return _Opaque(f"{n} bytes")
    if kind == "string1":
        return _text(reader, reader.uint(1), "latin-1")
    if kind == "string4":
        return _text(reader, reader.uint(4, signed=True), "latin-1")
    if kind in ("unicodestring1", "unicodestring4", "unicodestring8"):
        n = reader.uint({"unicodestring1": 1, "unicodestring4": 4, "unicodestring8": 8}[kind])
        return _text(reader, n, "utf-8")
    if kind in ("long1", "long4"):
        n = reader.uint(1) if kind == "long1" else reader.uint(4, signed=True)
        if n < 0:
            raise PickleMalformed(f"negative length {n}", reader.pos)
        if n > 64:
            reader.skip(n)
            return _Opaque("a long integer")
        return int.from_bytes(reader.read(n), "little", signed=True)
    line = reader.line()
    if kind == "stringnl_noescape_pair":
        line = line + b" " + reader.line()
        kind = "stringnl_noescape"
    try:
        return _text_arg(kind, line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PickleMalformed(f"bad {kind} argument {line[:40]!r}: {exc}", reader.pos) from exc


def _text_arg(kind: str, line: bytes) -> Any:
    if kind == "stringnl_noescape":
        return line.decode("utf-8")
    if kind == "stringnl":
        text = line.decode("latin-1")
        if len(text) < 2 or text[0] != text[-1] or text[0] not in "'\"":
            raise ValueError("no matching quotes")
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
    raise ValueError(f"unknown argument kind {kind}")


def _class_name(value: Any) -> str | None:
    """The class a value was built from: ``NEWOBJ(cls)``, ``cls(...)`` or copyreg's helper."""
    if not isinstance(value, _Call) or not isinstance(value.func, _Global):
        return None
    if value.func.full == "copyreg._reconstructor" and isinstance(value.args, tuple):
        first = value.args[0] if value.args else None
        return first.full if isinstance(first, _Global) else None
    return value.func.full


def _itemsize(dtype: Any) -> tuple[int, bool] | None:
    """(itemsize, has objects) of a symbolic ``numpy.dtype`` call, or None when unknown."""
    if not isinstance(dtype, _Call) or not isinstance(dtype.func, _Global):
        return None
    if dtype.func.full not in ("numpy.dtype", "numpy.core.multiarray.dtype"):
        return None
    if not isinstance(dtype.args, tuple) or not dtype.args or not isinstance(dtype.args[0], str):
        return None
    code = dtype.args[0]
    state = dtype.state
    flags = state[7] if isinstance(state, tuple) and len(state) > 7 else 0
    if code.startswith("O") or (isinstance(flags, int) and flags & 1):
        return 0, True
    if isinstance(state, tuple) and len(state) > 5 and isinstance(state[5], int) and state[5] > 0:
        return state[5], False
    digits = "".join(ch for ch in code[1:] if ch.isdigit())
    return (int(digits), False) if digits else None


class PickleWalker:
    """Walks one or more pickle streams in a file, reporting through ``emit``.

    ``emit(rule, severity, message, offset=, opcode=, global_name=)`` records a finding;
    ``extra`` adds allowlisted globals. ``globals_seen`` collects every resolved global.
    """

    def __init__(self, emit: Emit, extra: frozenset[str] = frozenset()) -> None:
        self.emit = emit
        self.extra = extra
        self.globals_seen: set[str] = set()
        self.persistent_ids: list[Any] = []

    # -- globals and calls ------------------------------------------------------------------

    def _global(self, module: Any, name: Any, offset: int, opcode: str) -> Any:
        if not isinstance(module, str) or not isinstance(name, str):
            self.emit(
                "unresolved-global",
                "high",
                f"{opcode} takes its module and name from values computed at load time "
                f"({_describe(module)}, {_describe(name)}); what it resolves to cannot be known "
                "statically",
                offset=offset,
                opcode=opcode,
            )
            return _Opaque("an unresolved global")
        if not _plausible(module) or not _plausible(name):
            raise PickleMalformed(
                f"{opcode} names {module[:60]!r} {name[:60]!r}, which no import can resolve",
                offset,
            )
        full = normalised_name(module, name)
        self.globals_seen.add(full)
        status = classify_global(module, name, self.extra)
        if status == "dangerous":
            self.emit(
                "dangerous-global",
                "critical",
                f"references {full}, which {dangerous_reason(module, name)}",
                offset=offset,
                opcode=opcode,
                global_name=full,
            )
        elif status == "not-allowed":
            self.emit(
                "global-not-allowed",
                "high",
                f"references {full}, which is not on the allowlist (importing it runs its module)",
                offset=offset,
                opcode=opcode,
                global_name=full,
            )
        return _Global(full, status)

    def _call(self, func: Any, args: Any, offset: int, opcode: str) -> _Call:
        if not isinstance(func, _Global):
            self.emit(
                "computed-callable",
                "high",
                f"{opcode} calls {_describe(func)}, not a named global; what it runs cannot be "
                "known statically",
                offset=offset,
                opcode=opcode,
            )
        elif func.status == "dangerous" and isinstance(args, tuple):
            inner = [a.full for a in args if isinstance(a, _Global)]
            if inner:
                self.emit(
                    "dangerous-global",
                    "critical",
                    f"{func.full} over {', '.join(inner)}",
                    offset=offset,
                    opcode=opcode,
                    global_name=func.full,
                )
        return _Call(func, args)

    # -- the walk ---------------------------------------------------------------------------

    def walk(self, stream: IO[bytes], offset: int = 0) -> tuple[Any, int]:
        """Walk one pickle from ``offset`` up to its STOP; returns (top value, end offset).

        Raises ``PickleMalformed`` where a loader would fail; the findings before it stand.
        """
        reader = _Reader(stream, offset)
        stack: list[Any] = []
        marks: list[int] = []
        memo: dict[int, Any] = {}

        def pop() -> Any:
            if not stack or (marks and len(stack) <= marks[-1]):
                raise PickleMalformed(f"{name} needs a value the stack does not hold", at)
            return stack.pop()

        def pop_mark() -> list[Any]:
            if not marks:
                raise PickleMalformed(f"{name} without a MARK", at)
            start = marks.pop()
            items = stack[start:]
            del stack[start:]
            return items

        while True:
            at = reader.pos
            code = stream.read(1)
            if not code:
                raise PickleMalformed("truncated: the stream ends before STOP", at)
            reader.pos += 1
            op = _OPS.get(code[0])
            if op is None:
                raise PickleMalformed(f"unknown opcode 0x{code[0]:02x}", at)
            name = op.name
            arg: Any = _read_arg(reader, op.arg.name) if op.arg is not None else None
            if name == "STOP":
                return (stack[-1] if stack else None), reader.pos
            if name in ("PROTO", "FRAME"):
                if name == "PROTO" and not 0 <= arg <= pickle.HIGHEST_PROTOCOL:
                    raise PickleMalformed(f"unsupported pickle protocol {arg}", at)
                continue
            if name == "MARK":
                marks.append(len(stack))
            elif name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                glob = self._global(module, attr, at, name)
                if name == "GLOBAL":
                    stack.append(glob)
                else:
                    stack.append(self._call(glob, tuple(pop_mark()[:_MAX_ITEMS]), at, name))
            elif name == "STACK_GLOBAL":
                attr, module = pop(), pop()
                stack.append(self._global(module, attr, at, name))
            elif name == "REDUCE" or name == "NEWOBJ":
                args = pop()
                stack.append(self._call(pop(), args, at, name))
            elif name == "NEWOBJ_EX":
                pop()
                args = pop()
                stack.append(self._call(pop(), args, at, name))
            elif name == "OBJ":
                items = pop_mark()
                if not items:
                    raise PickleMalformed("OBJ without a class", at)
                stack.append(self._call(items[0], tuple(items[1:_MAX_ITEMS]), at, name))
            elif name == "BUILD":
                state = pop()
                target = pop()
                if isinstance(target, _Call):
                    target.state = state
                elif not isinstance(target, _Opaque | dict | list):
                    self.emit(
                        "build-on-non-object",
                        "high",
                        f"BUILD sets the state of {_describe(target)}",
                        offset=at,
                        opcode=name,
                    )
                stack.append(target)
                if _class_name(target) == _JOBLIB_WRAPPER:
                    self._joblib_array(stream, reader, target, at)
            elif name in ("EXT1", "EXT2", "EXT4"):
                self.emit(
                    "extension-registry",
                    "high",
                    f"{name} {arg} loads a global from the copyreg extension registry, "
                    "which cannot be checked statically",
                    offset=at,
                    opcode=name,
                )
                stack.append(_Opaque("an extension-registry global"))
            elif name in ("PERSID", "BINPERSID"):
                pid = arg if name == "PERSID" else pop()
                if len(self.persistent_ids) < 1_000_000:
                    self.persistent_ids.append(pid)
                stack.append(_Call(_Opaque("persistent_load"), pid))
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                if not stack:
                    raise PickleMalformed(f"{name} on an empty stack", at)
                memo[int(arg)] = stack[-1]
            elif name == "MEMOIZE":
                if not stack:
                    raise PickleMalformed("MEMOIZE on an empty stack", at)
                memo[len(memo)] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if int(arg) not in memo:
                    raise PickleMalformed(f"{name} {arg}: no such memo entry", at)
                stack.append(memo[int(arg)])
            elif name == "POP":
                if stack and not (marks and len(stack) == marks[-1]):
                    stack.pop()
                else:
                    pop_mark()
            elif name == "POP_MARK":
                pop_mark()
            elif name == "DUP":
                value = pop()
                stack.extend((value, value))
            else:
                self._data_op(name, arg, stack, pop, pop_mark)

    def _data_op(self, name: str, arg: Any, stack: list[Any], pop: Any, pop_mark: Any) -> None:
        """Opcodes that only build data: constants and containers."""
        if name in ("NONE", "NEWTRUE", "NEWFALSE"):
            stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
        elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "EMPTY_TUPLE"):
            stack.append(
                {"EMPTY_LIST": [], "EMPTY_DICT": {}, "EMPTY_SET": [], "EMPTY_TUPLE": ()}[name]
            )
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = [pop() for _ in range(n)][::-1]
            stack.append(tuple(items))
        elif name in ("TUPLE", "LIST", "FROZENSET"):
            items = pop_mark()[:_MAX_ITEMS]
            stack.append(tuple(items) if name == "TUPLE" else list(items))
        elif name == "DICT":
            items = pop_mark()
            stack.append(_pairs(items))
        elif name == "APPEND":
            value = pop()
            target = pop()
            if isinstance(target, list) and len(target) < _MAX_ITEMS:
                target.append(value)
            stack.append(target)
        elif name in ("APPENDS", "ADDITEMS"):
            items = pop_mark()
            target = pop()
            if isinstance(target, list):
                target.extend(items[: max(0, _MAX_ITEMS - len(target))])
            stack.append(target)
        elif name == "SETITEM":
            value, key = pop(), pop()
            target = pop()
            if isinstance(target, dict) and isinstance(key, str | int) and len(target) < _MAX_ITEMS:
                target[key] = value
            stack.append(target)
        elif name == "SETITEMS":
            items = pop_mark()
            target = pop()
            if isinstance(target, dict):
                target.update(_pairs(items))
            stack.append(target)
        elif name == "NEXT_BUFFER":
            stack.append(_Opaque("an out-of-band buffer"))
        elif name == "READONLY_BUFFER":
            pop()
            stack.append(_Opaque("a read-only buffer"))
        else:  # every constant-pushing opcode: ints, floats, strings, bytes
            stack.append(arg)

    def _joblib_array(self, stream: IO[bytes], reader: _Reader, wrapper: _Call, at: int) -> None:
        """Step over the array joblib wrote right after a ``NumpyArrayWrapper``'s BUILD."""
        state = wrapper.state if isinstance(wrapper.state, dict) else {}
        shape = state.get("shape")
        size = _itemsize(state.get("dtype"))
        if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
            size = None
        if size is None:
            raise PickleMalformed(
                "a joblib NumpyArrayWrapper with a shape or dtype that cannot be read; "
                "the array bytes after it cannot be stepped over",
                at,
            )
        itemsize, has_objects = size
        if has_objects:  # joblib pickles object arrays as a nested stream
            _, reader.pos = self.walk(stream, reader.pos)
            return
        if state.get("numpy_array_alignment_bytes") is not None:
            reader.skip(reader.uint(1))
        count = 1
        for dim in shape:  # type: ignore[union-attr]
            count *= dim
        reader.skip(count * itemsize)

    def is_torch_legacy_magic(self, value: Any) -> bool:
        """Whether a first pickle's value is the legacy torch.save magic number."""
        return isinstance(value, int) and value == _TORCH_LEGACY_MAGIC


def _plausible(dotted: str) -> bool:
    """Whether an import could resolve the name: dotted parts of word characters or hyphens."""
    return bool(dotted) and all(
        part and part.replace("-", "_").isidentifier() for part in dotted.split(".")
    )


def _pairs(items: list[Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key, value in zip(items[0::2], items[1::2], strict=False):
        if isinstance(key, str | int) and len(out) < _MAX_ITEMS:
            out[key] = value
    return out


def _describe(value: Any) -> str:
    if isinstance(value, _Global):
        return value.full
    if isinstance(value, _Call):
        return f"the result of calling {_describe(value.func)}"
    if isinstance(value, _Opaque):
        return value.what
    if isinstance(value, str):
        return repr(value[:60])
    return type(value).__name__
