"""``restricted_load``: unpickle resolving only allowlisted globals (defence in depth).

The scanner decides before loading; this unpickler refuses any global off the allowlist even
when the scanner was bypassed or wrong, before the global's module is imported. Persistent
ids (torch's storage references) and extension-registry codes are refused too. joblib files
are read with joblib's own unpickler (it reads the raw array bytes between opcodes), with the
same restriction, nested object-array streams included.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Iterable
from typing import IO, Any

from mlwarden.errors import ModelError, UntrustedArtifactError
from mlwarden.models._scan_allowlist import allowed_globals, dangerous_reason, normalised_name

__all__ = ["restricted_load"]

_JOBLIB_PREFIXES = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x5d\x00\x00")


def _check(module: str, name: str, allowed: frozenset[str]) -> None:
    full = normalised_name(module, name)
    reason = dangerous_reason(module, name)
    if reason is not None:
        raise UntrustedArtifactError(
            f"the pickle references {full}, which {reason}; it was not loaded"
        )
    if full not in allowed:
        raise UntrustedArtifactError(
            f"the pickle references {full}, which is not on the allowlist; it was not loaded. "
            "Allow it only if you know its code is safe to run."
        )


def _unpickler_class(allowed: frozenset[str]) -> type[Any]:
    from joblib.numpy_pickle import NumpyUnpickler

    class _Restricted(NumpyUnpickler):  # type: ignore[misc]
        """joblib's unpickler (plain pickles too) resolving only allowed globals."""

        dispatch = NumpyUnpickler.dispatch.copy()

        def find_class(self, module: str, name: str) -> Any:
            _check(module, name, allowed)
            return super().find_class(module, name)

        def persistent_load(self, pid: Any) -> Any:
            raise UntrustedArtifactError(
                "the pickle uses persistent ids (a torch checkpoint?); load torch files "
                "with torch.load(weights_only=True)"
            )

    # Extension codes resolve globals without find_class: refuse them.
    def _refuse_ext(self: Any) -> None:
        raise UntrustedArtifactError("the pickle uses the copyreg extension registry (EXT1/2/4)")

    for code in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        _Restricted.dispatch[code[0]] = _refuse_ext
    return _Restricted


def restricted_load(data: bytes | IO[bytes], allow: Iterable[str] = ()) -> Any:
    """Unpickle ``data`` (bytes or a binary file), resolving only allowlisted globals.

    ``allow`` adds ``module.name`` entries; a known-dangerous callable (``os.system``,
    ``builtins.eval``...) is refused even when listed. Plain pickles and joblib files
    (uncompressed or zlib/gzip/bz2/xz/lzma-compressed) are read; refusals raise
    ``UntrustedArtifactError`` and unreadable streams ``ModelError``. Data after the pickle's
    end is refused too: a loader that keeps reading would run it.
    """
    extra = frozenset(allow)
    for name in sorted(extra):
        module, _, attr = name.rpartition(".")
        if dangerous_reason(module, attr) is not None:
            raise UntrustedArtifactError(
                f"{name} cannot be allowed: {dangerous_reason(module, attr)}"
            )
    stream: IO[bytes] = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    stream = _decompressed(stream)
    unpickler = _unpickler_class(allowed_globals() | extra)(
        "", stream, ensure_native_byte_order=True
    )
    try:
        value = unpickler.load()
        trailing = stream.read(1)
    except UntrustedArtifactError:
        raise
    except Exception as exc:  # malformed streams raise many kinds of errors
        raise ModelError(f"cannot unpickle the file: {type(exc).__name__}: {exc}") from exc
    if trailing:
        raise UntrustedArtifactError(
            "data follows the pickle's end (a second pickle, or a legacy torch file); a loader "
            "that keeps reading would run it, so the file was not loaded"
        )
    return value


def _decompressed(stream: IO[bytes]) -> IO[bytes]:
    """The stream itself, or a decompressing view when joblib compressed it."""
    import bz2
    import gzip
    import lzma
    import zlib

    head = stream.read(8)
    stream.seek(-len(head), 1)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=stream)  # type: ignore[return-value]
    if head[:3] == b"BZh":
        return bz2.BZ2File(stream)
    if head[:6] == b"\xfd7zXZ\x00" or head[:3] == b"\x5d\x00\x00":
        return lzma.LZMAFile(stream)
    if len(head) > 1 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        return io.BytesIO(zlib.decompress(stream.read()))
    return stream
