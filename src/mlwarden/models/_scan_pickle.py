"""Static pickle analysis: walk the opcodes with a symbolic stack and memo, never executing.

Every global a stream references (GLOBAL, INST, STACK_GLOBAL resolved through the memo) is
checked against the allowlist, since merely resolving it imports its module. Each call
(REDUCE, NEWOBJ, OBJ, INST) is traced to the global it calls; calling anything computed
(a getattr result, a string built at load time) is refused. Large byte payloads are skipped
by seeking, so memory stays bounded. joblib's raw array bytes, written between opcodes after
each ``NumpyArrayWrapper``, are skipped by the size the wrapper's shape and dtype give.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, MutableMapping
from typing import IO, Any

from mlwarden.models._scan_allowlist import classify_global, dangerous_reason, normalised_name
from mlwarden.models._scan_opcodes import (
    DATA,
    GET,
    OPS,
    PICKLE_OPCODES,
    PUSH,
    PUT,
    Opaque,
    PickleMalformed,
    Reader,
)
from mlwarden.models._scan_symbols import (
    MAX_ITEMS,
    Call,
    Global,
    class_name,
    describe,
    itemsize,
    pairs,
    plausible,
)

__all__ = ["PICKLE_OPCODES", "PickleMalformed", "PickleWalker"]

_JOBLIB_WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
_TRIAL_OPS = 4096  # opcodes walked in joblib array bytes before calling them a hidden pickle
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
Emit = Callable[..., None]


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
                f"({describe(module)}, {describe(name)}); what it resolves to cannot be known "
                "statically",
                offset=offset,
                opcode=opcode,
            )
            return Opaque("an unresolved global")
        if not plausible(module) or not plausible(name):
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
        return Global(full, status)

    def _call(self, func: Any, args: Any, offset: int, opcode: str) -> Call:
        if not isinstance(func, Global):
            self.emit(
                "computed-callable",
                "high",
                f"{opcode} calls {describe(func)}, not a named global; what it runs cannot be "
                "known statically",
                offset=offset,
                opcode=opcode,
            )
        elif func.status == "dangerous" and isinstance(args, tuple):
            inner = [a.full for a in args if isinstance(a, Global)]
            if inner:
                self.emit(
                    "dangerous-global",
                    "critical",
                    f"{func.full} over {', '.join(inner)}",
                    offset=offset,
                    opcode=opcode,
                    global_name=func.full,
                )
        return Call(func, args)

    # -- the walk ---------------------------------------------------------------------------

    def walk(self, stream: IO[bytes], offset: int = 0) -> tuple[Any, int]:
        """Walk one pickle from ``offset`` up to its STOP; returns (top value, end offset).

        Raises ``PickleMalformed`` where a loader would fail; the findings before it stand.
        """
        return self._run(Reader(stream, offset), [], [], {}, trial=False)

    def _run(
        self,
        reader: Reader,
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

        ops_get = OPS.get
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
            if group == PUSH:
                push(arg)
                continue
            if group == DATA:
                data_op(name, arg, stack, pop, pop_mark)
                continue
            if group == PUT:
                if not stack or (marks and len(stack) <= marks[-1]):
                    raise PickleMalformed(f"{name} with nothing to store", at)
                memo[len(memo) if name == "MEMOIZE" else int(arg)] = stack[-1]
                continue
            if group == GET:
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
                    stack.append(self._call(glob, tuple(pop_mark()[:MAX_ITEMS]), at, name))
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
                stack.append(self._call(items[0], tuple(items[1:MAX_ITEMS]), at, name))
            elif name == "BUILD":
                state = pop()
                target = pop()
                if isinstance(target, Call):
                    target.state = state
                elif not isinstance(target, Opaque | dict | list):
                    self.emit(
                        "build-on-non-object",
                        "high",
                        f"BUILD sets the state of {describe(target)}",
                        offset=at,
                        opcode=name,
                    )
                stack.append(target)
                if not trial and class_name(target) == _JOBLIB_WRAPPER:
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
                stack.append(Opaque("an extension-registry global"))
            elif name in ("PERSID", "BINPERSID"):
                pid = arg if name == "PERSID" else pop()
                if len(self.persistent_ids) < 1_000_000:
                    self.persistent_ids.append(pid)
                stack.append(Call(Opaque("persistent_load"), pid))
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
            items = pop_mark()[:MAX_ITEMS]
            stack.append(tuple(items) if name == "TUPLE" else list(items))
        elif name == "DICT":
            items = pop_mark()
            stack.append(pairs(items))
        elif name == "APPEND":
            value = pop()
            target = pop()
            if isinstance(target, list) and len(target) < MAX_ITEMS:
                target.append(value)
            stack.append(target)
        elif name in ("APPENDS", "ADDITEMS"):
            items = pop_mark()
            target = pop()
            if isinstance(target, list):
                target.extend(items[: max(0, MAX_ITEMS - len(target))])
            stack.append(target)
        elif name == "SETITEM":
            value, key = pop(), pop()
            target = pop()
            if isinstance(target, dict) and isinstance(key, str | int) and len(target) < MAX_ITEMS:
                target[key] = value
            stack.append(target)
        elif name == "SETITEMS":
            items = pop_mark()
            target = pop()
            if isinstance(target, dict) and len(target) < MAX_ITEMS:
                target.update(pairs(items))
            stack.append(target)
        elif name == "NEXT_BUFFER":
            stack.append(Opaque("an out-of-band buffer"))
        elif name == "READONLY_BUFFER":
            pop()
            stack.append(Opaque("a read-only buffer"))
        else:
            raise AssertionError(f"opcode {name} has no handler")

    def _pickle_load_view(
        self, reader: Reader, stack: list[Any], marks: list[int], memo: MutableMapping[int, Any]
    ) -> None:
        """Walk the bytes after a joblib array wrapper as ``pickle.load`` would read them.

        To ``joblib.load`` they are array data; to ``pickle.load`` they are more opcodes. A file
        whose "array data" is a payload runs it under ``pickle.load``, so those bytes are
        walked too, on a copy of the state, up to where ``pickle.load`` would fail. Here only
        dangerous globals make the file unsafe: a benign object array's nested pickle also
        reads as opcodes, resolving nonsense names through the outer memo.
        """
        first = reader.clone().byte()
        if first is None or first not in OPS:  # pickle.load stops at once (joblib's padding)
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
            self._run(reader.clone(), list(stack), list(marks), dict(memo), trial=True)
        except PickleMalformed:
            pass  # where pickle.load would stop: everything before it was checked
        finally:
            self.emit = emit

    def _joblib_array(self, stream: IO[bytes], reader: Reader, wrapper: Call, at: int) -> None:
        """Step over the array joblib wrote right after a ``NumpyArrayWrapper``'s BUILD."""
        state = wrapper.state if isinstance(wrapper.state, dict) else {}
        shape = state.get("shape")
        size = itemsize(state.get("dtype"))
        if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
            size = None
        if size is None:
            raise PickleMalformed(
                "a joblib NumpyArrayWrapper with a shape or dtype that cannot be read; "
                "the array bytes after it cannot be stepped over",
                at,
            )
        width, has_objects = size
        if has_objects:  # joblib pickles object arrays as a nested stream
            _, end = self.walk(stream, reader.pos)
            reader.resync(end)
            return
        if state.get("numpy_array_alignment_bytes") is not None:
            reader.skip(reader.uint(1))
        count = 1
        for dim in shape:  # type: ignore[union-attr]
            count *= dim
        reader.skip(count * width)

    def is_torch_legacy_magic(self, value: Any) -> bool:
        """Whether a first pickle's value is the legacy torch.save magic number."""
        return isinstance(value, int) and value == _TORCH_LEGACY_MAGIC
