"""What a step function sees: its parameters, its input artifacts, and a way to report progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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
    """An artifact a step produced: bytes, a media type and a file-like name."""

    data: bytes
    media_type: str
    name: str


@dataclass
class StepContext:
    """Inputs, parameters and side channels of one step execution."""

    step: str
    params: dict[str, Any]
    run: dict[str, Any]
    _read: Callable[[str], bytes]
    _progress: Callable[[str], None] = lambda _msg: None
    kept: dict[str, Output] = field(default_factory=dict)
    records: list[RecordBuilder] = field(default_factory=list)

    def input(self, role: str) -> bytes:
        """The bytes of an input artifact, verified against their hash."""
        return self._read(role)

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
