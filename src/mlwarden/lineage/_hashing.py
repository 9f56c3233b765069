"""Canonical JSON and sha256 helpers: the byte forms that every hash in the store is taken over."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
_CHUNK = 1 << 20


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` to one stable byte form: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_json(value: Any) -> str:
    """Hex sha256 of the canonical JSON form of ``value``."""
    return sha256_bytes(canonical_json(value))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large artifacts stay out of memory."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
