"""Build ``src/mlwarden/data/_bundled/pydoc_corpus.txt.gz`` from the standard library's docstrings.

Run by hand, once: ``.venv/bin/python scripts/make_docstring_corpus.py``. The corpus is real
English/technical prose (the PSF-licensed docstrings of a fixed list of standard-library
modules), used to train the small character language model that the canary-exposure attack
(Carlini et al., "The Secret Sharer", USENIX Security 2019) measures. It is vendored, so
results never depend on the Python version at run time.

What it does: imports each module of :data:`MODULES`; takes the module docstring and, with
``inspect.getdoc``, the docstring of every public function and class the module itself defines
and of every public method or property those classes define; normalises each docstring to
printable ASCII (NFKD, accents dropped, tabs as spaces, other characters removed, trailing
spaces stripped, runs of blank lines collapsed); drops duplicates and docstrings shorter than
:data:`MIN_CHARS`; sorts them; and writes them separated by one blank line. The same Python
version gives the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib
import inspect
import re
import sys
import unicodedata
from pathlib import Path

#: Standard-library modules whose docstrings make the corpus, sorted.
MODULES: tuple[str, ...] = (
    "abc",
    "argparse",
    "ast",
    "bisect",
    "calendar",
    "codecs",
    "collections",
    "configparser",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "doctest",
    "email.message",
    "email.utils",
    "enum",
    "fnmatch",
    "fractions",
    "ftplib",
    "functools",
    "getopt",
    "gettext",
    "glob",
    "gzip",
    "hashlib",
    "heapq",
    "http.client",
    "http.cookiejar",
    "imaplib",
    "inspect",
    "ipaddress",
    "itertools",
    "json",
    "locale",
    "logging",
    "mailbox",
    "numbers",
    "operator",
    "optparse",
    "os",
    "pathlib",
    "pickle",
    "pprint",
    "queue",
    "random",
    "re",
    "sched",
    "secrets",
    "selectors",
    "shlex",
    "shutil",
    "smtplib",
    "socket",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "timeit",
    "traceback",
    "typing",
    "unittest",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "weakref",
    "xml.dom.minidom",
    "xml.etree.ElementTree",
    "zipfile",
)

#: Docstrings shorter than this (after normalising) are too terse to be prose, and dropped.
MIN_CHARS = 40

OUTPUT = Path(__file__).resolve().parents[1] / "src/mlwarden/data/_bundled/pydoc_corpus.txt.gz"

_PRINTABLE = frozenset(chr(c) for c in range(32, 127)) | {"\n"}


def normalise(text: str) -> str:
    """Printable ASCII only: accents dropped, tabs as four spaces, blank-line runs collapsed."""
    text = unicodedata.normalize("NFKD", text).replace("\t", "    ").replace("\r", "")
    text = "".join(ch for ch in text if ch in _PRINTABLE)
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def _public(name: str) -> bool:
    return not name.startswith("_")


def docstrings(module_name: str) -> list[str]:
    """Every docstring of the module, its own public functions and classes, and their members."""
    module = importlib.import_module(module_name)
    found = [inspect.getdoc(module)]
    for name, obj in sorted(vars(module).items()):
        if not _public(name) or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isroutine(obj):
            found.append(inspect.getdoc(obj))
        elif inspect.isclass(obj):
            found.append(inspect.getdoc(obj))
            for member_name, member in sorted(vars(obj).items()):
                if not _public(member_name):
                    continue
                if isinstance(member, staticmethod | classmethod):
                    member = member.__func__
                if inspect.isfunction(member) or isinstance(member, property):
                    found.append(member.__doc__ and inspect.cleandoc(member.__doc__))
    return [doc for doc in found if doc]


def build() -> str:
    """The whole corpus: normalised, deduplicated, sorted docstrings, one blank line apart."""
    unique: set[str] = set()
    for module_name in MODULES:
        for doc in docstrings(module_name):
            text = normalise(doc)
            if len(text) >= MIN_CHARS:
                unique.add(text)
    return "\n\n".join(sorted(unique)) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    corpus = build()
    data = corpus.encode("ascii")
    args.output.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    print(
        f"wrote {args.output} ({len(data):,} bytes, {corpus.count(chr(10)):,} lines) with "
        f"Python {sys.version.split()[0]}; sha256 {hashlib.sha256(data).hexdigest()}"
    )


if __name__ == "__main__":
    main()
