"""Which pickle globals a model file may reference, and which are named dangerous.

The allowlist is data: ``_scan_allowlist.txt`` beside this module, one ``module.name`` per line,
grouped and commented. It was derived by pickling every scikit-learn estimator family (fitted),
NumPy arrays and dtypes, SciPy sparse matrices and torch state dicts and reading their globals,
then reviewed by hand: functions that read files, import code or run commands were left out.
Anything not on it is refused (fail-closed). The danger list below only NAMES the worst
callables in findings; it never lets anything through.
"""

from __future__ import annotations

import _compat_pickle
from functools import cache, lru_cache
from importlib import resources
from typing import Literal

__all__ = [
    "Classification",
    "allowed_globals",
    "classify_global",
    "dangerous_reason",
    "normalised_name",
]

Classification = Literal["allowed", "dangerous", "not-allowed"]


@cache
def allowed_globals() -> frozenset[str]:
    """The default allowlist of ``module.name`` globals, read once from its data file."""
    text = resources.files("mlwarden.models").joinpath("_scan_allowlist.txt").read_text("utf-8")
    names = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return frozenset(name for name in names if name)


# Whole modules whose every callable can run commands, touch files or the network, import or
# execute code, or unpickle again.
_DANGEROUS_MODULES: dict[str, str] = {
    "os": "runs commands and touches files",
    "posix": "runs commands and touches files",
    "nt": "runs commands and touches files",
    "subprocess": "runs commands",
    "pty": "runs commands",
    "commands": "runs commands",
    "popen2": "runs commands",
    "platform": "runs commands",
    "runpy": "runs Python modules",
    "pip": "installs and runs packages",
    "setuptools": "runs build code",
    "webbrowser": "opens URLs",
    "socket": "opens network connections",
    "ssl": "opens network connections",
    "http": "opens network connections",
    "urllib": "opens network connections",
    "urllib2": "opens network connections",
    "requests": "opens network connections",
    "httplib": "opens network connections",
    "ftplib": "opens network connections",
    "smtplib": "opens network connections",
    "telnetlib": "opens network connections",
    "ctypes": "calls native code",
    "_ctypes": "calls native code",
    "cffi": "calls native code",
    "importlib": "imports code",
    "imp": "imports code",
    "zipimport": "imports code",
    "pkgutil": "imports code",
    "code": "runs Python source",
    "codeop": "compiles Python source",
    "timeit": "runs Python source",
    "trace": "runs Python source",
    "pdb": "runs Python source",
    "bdb": "runs Python source",
    "cProfile": "runs Python source",
    "profile": "runs Python source",
    "doctest": "runs Python source",
    "marshal": "loads code objects",
    "types": "builds functions from code objects",
    "shutil": "copies and deletes files",
    "tempfile": "creates files",
    "glob": "lists files",
    "pathlib": "reads and writes files",
    "io": "opens files",
    "_io": "opens files",
    "codecs": "opens files",
    "fileinput": "reads files",
    "linecache": "reads files",
    "shelve": "unpickles again",
    "pickle": "unpickles again",
    "_pickle": "unpickles again",
    "cPickle": "unpickles again",
    "dill": "unpickles again",
    "cloudpickle": "unpickles again",
    "sys": "reaches every loaded module",
    "gc": "reaches every live object",
    "inspect": "reaches frames and globals",
    "asyncio": "runs commands and opens connections",
    "multiprocessing": "starts processes",
    "signal": "kills processes",
    "threading": "starts threads that run callables",
    "_thread": "starts threads that run callables",
}

# Single callables, named with why they are dangerous.
_DANGEROUS_NAMES: dict[str, str] = {
    "builtins.eval": "evaluates Python source",
    "builtins.exec": "executes Python source",
    "builtins.compile": "compiles Python source",
    "builtins.execfile": "executes a Python file",
    "builtins.__import__": "imports any module",
    "builtins.getattr": "reaches any attribute (getattr chains)",
    "builtins.setattr": "overwrites any attribute",
    "builtins.delattr": "deletes any attribute",
    "builtins.open": "opens files",
    "builtins.file": "opens files",
    "builtins.input": "reads the terminal",
    "builtins.breakpoint": "starts a debugger",
    "builtins.globals": "reaches module globals",
    "builtins.locals": "reaches frame locals",
    "builtins.vars": "reaches object namespaces",
    "builtins.apply": "calls any callable",
    "builtins.memoryview": "reads raw memory",
    "operator.attrgetter": "reaches any attribute",
    "operator.methodcaller": "calls any method",
    "operator.itemgetter": "reaches any item",
    "_operator.attrgetter": "reaches any attribute",
    "_operator.methodcaller": "calls any method",
    "_operator.itemgetter": "reaches any item",
    "functools.partial": "wraps a callable for a later call",
    "functools.reduce": "calls a callable repeatedly",
    "_functools.partial": "wraps a callable for a later call",
    "_functools.reduce": "calls a callable repeatedly",
    "copyreg._reconstructor.__globals__": "reaches module globals",
    "numpy.load": "loads another file (with pickles)",
    "numpy.lib.npyio.load": "loads another file (with pickles)",
    "numpy.fromfile": "reads files",
    "numpy.save": "writes files",
    "numpy.savetxt": "writes files",
    "numpy.loadtxt": "reads files",
    "numpy.memmap": "maps files",
    "numpy.testing._private.utils.runstring": "executes Python source",
    "numpy.f2py": "compiles and runs code",
    "numpy.distutils": "runs build code",
    "joblib.load": "loads another pickle",
    "joblib.numpy_pickle.load": "loads another pickle",
    "torch.load": "loads another pickle",
    "torch.serialization.load": "loads another pickle",
    "torch.hub": "downloads and runs code",
    "torch.jit.load": "loads TorchScript code",
    "torch.package": "loads packaged code",
    "torch._dynamo": "compiles and runs code",
    "torch._inductor": "compiles and runs code",
    "torch.utils.cpp_extension": "compiles native code",
    "keras.models.load_model": "loads another model",
    "tensorflow.io": "reads and writes files",
    "pandas.read_pickle": "loads another pickle",
    "pandas.io": "reads files and URLs",
    "scipy.io": "reads files",
    "sklearn.datasets": "downloads data and writes files",
    "skops.io.load": "loads another model",
}


def _normalise(module: str, name: str) -> tuple[str, str]:
    """Map Python 2 names to what ``pickle`` resolves them to (``__builtin__`` is builtins)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _named(parts: list[str]) -> str | None:
    """The danger of the longest dotted prefix of ``parts`` on the name list, if any."""
    for end in range(len(parts), 0, -1):
        reason = _DANGEROUS_NAMES.get(".".join(parts[:end]))
        if reason is not None:
            return reason
    return None


@lru_cache(maxsize=8192)
def dangerous_reason(module: str, name: str) -> str | None:
    """Why ``module.name`` is a known-dangerous callable, or None.

    A dotted ``name`` is an attribute chain (protocol 4 resolves it); a chain that reaches a
    dangerous module or callable through an innocent one (``sklearn.base`` then ``os.system``)
    is named like the callable it reaches.
    """
    module, name = _normalise(module, name)
    parts = f"{module}.{name}".split(".")
    reason = _named(parts)
    if reason is not None:
        return reason
    if parts[0] in _DANGEROUS_MODULES:
        return _DANGEROUS_MODULES[parts[0]]
    attrs = name.split(".")
    for start in range(1, len(attrs)):
        tail = attrs[start - 1 :] if start == 1 else attrs[start:]
        reason = _named(tail)
        if reason is not None:
            return f"reaches {'.'.join(tail)}: {reason}"
        if tail[0] in _DANGEROUS_MODULES and len(tail) > 1:
            return f"reaches {tail[0]}: {_DANGEROUS_MODULES[tail[0]]}"
    return None


@lru_cache(maxsize=8192)
def classify_global(module: str, name: str, extra: frozenset[str] = frozenset()) -> Classification:
    """``allowed`` when ``module.name`` is on the allowlist (or ``extra``) and not dangerous."""
    if dangerous_reason(module, name) is not None:
        return "dangerous"
    module, name = _normalise(module, name)
    full = f"{module}.{name}"
    return "allowed" if full in allowed_globals() or full in extra else "not-allowed"


def normalised_name(module: str, name: str) -> str:
    """``module.name`` as the unpickler resolves it."""
    module, name = _normalise(module, name)
    return f"{module}.{name}"
