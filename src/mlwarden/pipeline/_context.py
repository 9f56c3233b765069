"""What a step function sees: its parameters, its input artifacts, and a way to report progress."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlwarden.lineage import Appender
from mlwarden.pipeline._io import read_json, read_table

if TYPE_CHECKING:
    import pandas as pd

# Builds a record payload inside the transaction that completes the step, so that what it
# computes from the store (a version number, the chain head) cannot race another writer.
RecordBuilder = Callable[[Appender], tuple[str, str, dict[str, Any]]]


@dataclass(frozen=True)
class Output:
    """An artifact a step produced: bytes (or a file, for big tables), a media type and a name."""

    data: bytes | Path
    media_type: str
    name: str

    def in_memory(self) -> Output:
        """The same artifact as bytes, to send where this machine's files cannot be read."""
        if isinstance(self.data, Path):
            return Output(self.data.read_bytes(), self.media_type, self.name)
        return self


@dataclass
class StepContext:
    """Inputs, parameters and side channels of one step execution."""

    step: str
    params: dict[str, Any]
    run: dict[str, Any]
    _read: Callable[[str], bytes]
    _progress: Callable[[str], None] = lambda _msg: None
    _path: Callable[[str], Path] | None = None
    kept: dict[str, Output] = field(default_factory=dict)
    records: list[RecordBuilder] = field(default_factory=list)
    _scratch: Path | None = None

    def input(self, role: str) -> bytes:
        """The bytes of an input artifact, verified against their hash."""
        return self._read(role)

    def input_path(self, role: str) -> Path:
        """A read-only file holding an input artifact, verified against its hash.

        For inputs too big to hold in memory: read it in parts. Where the store's files are
        not at hand (a remote worker), the bytes are written to the step's scratch folder.
        """
        if self._path is not None:
            return self._path(role)
        copy = self.scratch() / f"input-{role}"
        if not copy.exists():
            copy.write_bytes(self.input(role))
        return copy

    def scratch(self) -> Path:
        """A private folder for the step's temporary files (outputs written in parts).

        Removed by :meth:`close` once the step's outputs are stored.
        """
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix=f"mlwarden-{self.step}-"))
        return self._scratch

    def close(self) -> None:
        """Remove the scratch folder and everything in it."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def table(self, role: str) -> pd.DataFrame:
        """An input artifact read as a table."""
        return read_table(self.input(role))

    def json(self, role: str) -> Any:
        """An input artifact read as JSON."""
        return read_json(self.input(role))

    def progress(self, message: str) -> None:
        """Tell the user what the step is doing now."""
        self._progress(message)

    def keep(self, role: str, output: Output) -> None:
        """Store an output now, so it survives even if the step then fails (rejected rows)."""
        self.kept[role] = output

    def emit(self, builder: RecordBuilder) -> None:
        """Append a record (built inside the completing transaction) when the step succeeds."""
        self.records.append(builder)
