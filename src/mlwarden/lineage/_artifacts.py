"""Content-addressed artifact files: ``artifacts/ab/cdef...`` named by the sha256 of their bytes."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from mlwarden.errors import IntegrityError, RecordNotFoundError
from mlwarden.lineage._hashing import sha256_bytes, sha256_file

logger = logging.getLogger(__name__)

_COPY_CHUNK = 1 << 20


class ArtifactFiles:
    """A folder of immutable blobs; writing the same bytes twice stores them once."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        """Where the blob with this hash lives (whether or not it exists)."""
        return self.root / sha256[:2] / sha256[2:]

    def write(self, data: bytes | Path) -> str:
        """Store ``data`` (bytes, or a file read in chunks) durably and return its sha256.

        An intact existing blob is left untouched; a damaged one is replaced (and logged), since
        the bytes that match the recorded hash are at hand.
        """
        if isinstance(data, Path):
            digest, size = sha256_file(data), data.stat().st_size
        else:
            digest, size = sha256_bytes(data), len(data)
        target = self.path(digest)
        if target.exists():
            if self.check(digest, size) is None:
                return digest
            logger.warning("artifact %s was damaged on disk; rewriting it", digest[:12])
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                if isinstance(data, Path):
                    with data.open("rb") as source:
                        shutil.copyfileobj(source, fh, _COPY_CHUNK)
                else:
                    fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if isinstance(data, Path) and sha256_file(Path(tmp)) != digest:
                raise IntegrityError(f"{data} changed while it was stored as an artifact")
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def read(self, sha256: str) -> bytes:
        """Return the blob's bytes after checking they still hash to ``sha256``."""
        target = self.path(sha256)
        if not target.exists():
            raise RecordNotFoundError(f"artifact {sha256[:12]} has no file at {target}")
        data = target.read_bytes()
        if sha256_bytes(data) != sha256:
            raise IntegrityError(f"artifact {sha256[:12]} at {target} does not match its hash")
        return data

    def verified_path(self, sha256: str) -> Path:
        """The blob's file, after checking (in chunks) that it still hashes to ``sha256``.

        For artifacts too big to hold in memory; the file is read-only, so readers cannot
        change it by accident.
        """
        target = self.path(sha256)
        if not target.exists():
            raise RecordNotFoundError(f"artifact {sha256[:12]} has no file at {target}")
        if sha256_file(target) != sha256:
            raise IntegrityError(f"artifact {sha256[:12]} at {target} does not match its hash")
        return target

    def check(self, sha256: str, size: int) -> str | None:
        """Return why the blob is bad (missing, resized or changed), or None if it is intact."""
        target = self.path(sha256)
        if not target.exists():
            return "file is missing"
        actual_size = target.stat().st_size
        if actual_size != size:
            return f"size is {actual_size} bytes, recorded {size}"
        if sha256_file(target) != sha256:
            return "content does not match its sha256"
        return None
