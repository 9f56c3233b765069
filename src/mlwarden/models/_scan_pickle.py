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
from collections import ChainMap
from collections.abc import Callable, MutableMapping
from functools import lru_cache
from typing import IO, Any

from mlwarden.models._scan_allowlist import classify_global, dangerous_reason, normalised_name

__all__ = ["PICKLE_OPCODES", "PickleMalformed", "PickleWalker"]

_MAX_LINE = 1 << 16
_CHUNK = 1 << 16
_MAX_TEXT = 4096  # strings kept for resolving globals; longer ones are opaque
_MAX_ITEMS = 512  # items kept per container
_JOBLIB_WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
_TRIAL_OPS = 4096  # opcodes walked in joblib array bytes before calling them a hidden pickle
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

    def clone(self) -> _Reader:
        """A reader at the same place, sharing the buffer (readers seek before they read)."""
        twin = _Reader.__new__(_Reader)
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


def _text(reader: _Reader, n: int, encoding: str) -> Any:
    if n > _MAX_TEXT:
        reader.skip(n)
        return _Opaque(f"a {n}-byte string")
    raw = reader.read(n)
    try:
        return raw.decode(encoding, "surrogatepass")
    except UnicodeDecodeError as exc:
        raise PickleMalformed(f"a string is not valid {encoding}: {exc}", reader.pos) from exc


def _uint1(reader: _Reader) -> int:
    i = reader.i
    if i < reader.end:  # the common case, inlined
        reader.i = i + 1
        return reader.buf[i]
    value = reader.byte()
    if value is None:
        raise PickleMalformed("truncated: needed 1 byte, 0 left", reader.pos)
    return value


def _sized(width: int, signed: bool = False) -> Callable[[_Reader], int]:
    if width == 1:
        return _uint1
    return lambda reader: int.from_bytes(reader.read(width), "little", signed=signed)


def _payload(width: int) -> Callable[[_Reader], _Opaque]:
    def read(reader: _Reader) -> _Opaque:
        n = reader.uint(width)
        reader.skip(n)
        return _Opaque(f"{n} bytes")

    return read


def _string(width: int, signed: bool, encoding: str) -> Callable[[_Reader], Any]:
    return lambda reader: _text(reader, reader.uint(width, signed), encoding)


def _float8(reader: _Reader) -> float:
    reader.skip(8)
    return 0.0


def _long(width: int) -> Callable[[_Reader], Any]:
    def read(reader: _Reader) -> Any:
        n = reader.uint(width, width == 4)
        if n < 0:
            raise PickleMalformed(f"negative length {n}", reader.pos)
        if n > 64:
            reader.skip(n)
            return _Opaque("a long integer")
        return int.from_bytes(reader.read(n), "little", signed=True)

    return read


def _line(kind: str) -> Callable[[_Reader], Any]:
    def read(reader: _Reader) -> Any:
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


_ARG_READERS: dict[str, Callable[[_Reader], Any]] = {
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


_PUSH, _DATA, _PUT, _GET, _OTHER = range(5)
PICKLE_OPCODES = frozenset(op.code.encode("latin-1")[0] for op in pickletools.opcodes)


def _group(name: str) -> int:
    if name in _CONSTANTS:
        return _PUSH
    if name in _DATA_OPS:
        return _DATA
    if name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
        return _PUT
    return _GET if name in ("BINGET", "LONG_BINGET", "GET") else _OTHER


# opcode byte -> (name, argument reader, group)
_OPS: dict[int, tuple[str, Callable[[_Reader], Any] | None, int]] = {
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
        return self._run(_Reader(stream, offset), [], [], {}, trial=False)

    def _run(
        self,
        reader: _Reader,
        stack: list[Any],
        marks: list[int],
        memo: MutableMapping[int, Any],
        trial: bool,
    ) -> tuple[Any, int]:
        """The opcode loop. ``trial``: walking bytes a loader may read as opcodes or not."""
        stream = reader.stream
        count = 0

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

        ops_get = _OPS.get
        push = stack.append
        data_op = self._data_op
        while True:
            if trial:
                count += 1
                if count > _TRIAL_OPS:
                    raise PickleMalformed(
                        f"joblib array bytes parse as {_TRIAL_OPS} pickle opcodes", reader.pos
                    )
            i = reader.i
            at = reader.base + i
            if i < reader.end:  # inlined reader.byte(): once per opcode
                code: int | None = reader.buf[i]
                reader.i = i + 1
            else:
                code = reader.byte()
            if code is None:
                raise PickleMalformed("truncated: the stream ends before STOP", at)
            op = ops_get(code)
            if op is None:
                raise PickleMalformed(f"unknown opcode 0x{code:02x}", at)
            name, read_arg, group = op
            arg: Any = read_arg(reader) if read_arg is not None else None
            if group == _PUSH:
                push(arg)
                continue
            if group == _DATA:
                data_op(name, arg, stack, pop, pop_mark)
                continue
            if group == _PUT:
                if not stack or (marks and len(stack) <= marks[-1]):
                    raise PickleMalformed(f"{name} with nothing to store", at)
                memo[len(memo) if name == "MEMOIZE" else int(arg)] = stack[-1]
                continue
            if group == _GET:
                if arg not in memo:
                    raise PickleMalformed(f"{name} {arg}: no such memo entry", at)
                push(memo[arg])
                continue
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
                if not trial and _class_name(target) == _JOBLIB_WRAPPER:
                    self._pickle_load_view(reader, stack, marks, memo)
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
                raise AssertionError(f"opcode {name} has no handler")

    def _data_op(self, name: str, arg: Any, stack: list[Any], pop: Any, pop_mark: Any) -> None:
        """Opcodes that only build data: constants and containers."""
        if name == "EMPTY_DICT":
            stack.append({})
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("EMPTY_LIST", "EMPTY_SET"):
            stack.append([])
        elif name == "TUPLE1":
            stack.append((pop(),))
        elif name == "TUPLE2":
            second = pop()
            stack.append((pop(), second))
        elif name == "TUPLE3":
            third, second = pop(), pop()
            stack.append((pop(), second, third))
        elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
            stack.append(None if name == "NONE" else name == "NEWTRUE")
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
            if isinstance(target, dict) and len(target) < _MAX_ITEMS:
                target.update(_pairs(items))
            stack.append(target)
        elif name == "NEXT_BUFFER":
            stack.append(_Opaque("an out-of-band buffer"))
        elif name == "READONLY_BUFFER":
            pop()
            stack.append(_Opaque("a read-only buffer"))
        else:
            raise AssertionError(f"opcode {name} has no handler")

    def _pickle_load_view(
        self, reader: _Reader, stack: list[Any], marks: list[int], memo: MutableMapping[int, Any]
    ) -> None:
        """Walk the bytes after a joblib array wrapper as ``pickle.load`` would read them.

        To ``joblib.load`` they are array data; to ``pickle.load`` they are more opcodes. A file
        whose "array data" is a payload runs it under ``pickle.load``, so those bytes are
        walked too, on a copy of the state, up to where ``pickle.load`` would fail. Here only
        dangerous globals make the file unsafe: a benign object array's nested pickle also
        reads as opcodes, resolving nonsense names through the outer memo.
        """
        first = reader.clone().byte()
        if first is None or first not in _OPS:  # pickle.load stops at once (joblib's padding)
            return
        emit = self.emit

        def viewed(rule: str, severity: str, message: str, **where: Any) -> None:
            # Benign object arrays also parse here (against the outer memo, into nonsense
            # names): only what is dangerous by name, or unresolvable, stays unsafe.
            if rule not in ("dangerous-global", "extension-registry"):
                severity = "low"
            emit(rule, severity, f"{message} (bytes that joblib reads as array data and "
                 "pickle.load as opcodes)", **where)  # fmt: skip

        self.emit = viewed
        try:
            self._run(reader.clone(), list(stack), list(marks), ChainMap({}, memo), trial=True)
        except PickleMalformed:
            pass  # where pickle.load would stop: everything before it was checked
        finally:
            self.emit = emit

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
            _, end = self.walk(stream, reader.pos)
            reader.resync(end)
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


@lru_cache(maxsize=8192)
def _plausible(dotted: str) -> bool:
    """Whether an import could resolve the name: dotted parts of word characters or hyphens."""
    return bool(dotted) and all(
        part and part.replace("-", "_").isidentifier() for part in dotted.split(".")
    )


def _pairs(items: list[Any]) -> dict[Any, Any]:
    if len(items) > 2 * _MAX_ITEMS:
        items = items[: 2 * _MAX_ITEMS]
    try:
        return dict(zip(items[0::2], items[1::2], strict=False))
    except TypeError:  # an unhashable (list, dict) key: keep the others
        return {k: v for k, v in zip(items[0::2], items[1::2], strict=False) if _hashable(k)}


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


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
