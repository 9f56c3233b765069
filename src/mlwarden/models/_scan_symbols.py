"""Symbolic values of the static pickle walk: globals, calls and what cannot be known."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from mlwarden.models._scan_opcodes import Opaque

__all__ = [
    "MAX_ITEMS",
    "Call",
    "Global",
    "class_name",
    "describe",
    "itemsize",
    "pairs",
    "plausible",
]

MAX_ITEMS = 512  # items kept per container


class Global:
    __slots__ = ("full", "status")

    def __init__(self, full: str, status: str) -> None:
        self.full = full
        self.status = status


class Call:
    """The result of calling ``func`` (a global or something computed) with ``args``."""

    __slots__ = ("args", "func", "state")

    def __init__(self, func: Any, args: Any) -> None:
        self.func = func
        self.args = args
        self.state: Any = None


def class_name(value: Any) -> str | None:
    """The class a value was built from: ``NEWOBJ(cls)``, ``cls(...)`` or copyreg's helper."""
    if not isinstance(value, Call) or not isinstance(value.func, Global):
        return None
    if value.func.full == "copyreg._reconstructor" and isinstance(value.args, tuple):
        first = value.args[0] if value.args else None
        return first.full if isinstance(first, Global) else None
    return value.func.full


def itemsize(dtype: Any) -> tuple[int, bool] | None:
    """(itemsize, has objects) of a symbolic ``numpy.dtype`` call, or None when unknown."""
    if not isinstance(dtype, Call) or not isinstance(dtype.func, Global):
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


@lru_cache(maxsize=8192)
def plausible(dotted: str) -> bool:
    """Whether an import could resolve the name: dotted parts of word characters or hyphens."""
    return bool(dotted) and all(
        part and part.replace("-", "_").isidentifier() for part in dotted.split(".")
    )


def pairs(items: list[Any]) -> dict[Any, Any]:
    if len(items) > 2 * MAX_ITEMS:
        items = items[: 2 * MAX_ITEMS]
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


def describe(value: Any) -> str:
    if isinstance(value, Global):
        return value.full
    if isinstance(value, Call):
        return f"the result of calling {describe(value.func)}"
    if isinstance(value, Opaque):
        return value.what
    if isinstance(value, str):
        return repr(value[:60])
    return type(value).__name__
