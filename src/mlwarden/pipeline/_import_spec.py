"""Specs that bring a model instead of training one: ``model: {import: path}``.

A tabular spec names the file beside its data (the pipeline scans and imports it where it
would train, then evaluates, audits, gates and registers as usual); ``ImportSpec`` is the
import alone, for ``mlwarden import FILE`` without data: its gate checks the scan.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from mlwarden.lineage import sha256_json
from mlwarden.models import ScanPolicy
from mlwarden.pipeline._spec_base import GateSpec, RegisterSpec


class ImportSource(BaseModel):
    """The model file to import (``import: path``), the scan policy it is checked under, and
    for a model that reads one numeric matrix (ONNX, torch) the order of its columns.

    ``columns`` None: the table's own column order (its header, the label left out), which is
    the order a model fitted on that table's columns reads.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    path: Path = Field(alias="import")
    scan_policy: ScanPolicy = ScanPolicy()
    columns: list[str] | None = Field(default=None, min_length=1)


class ImportSpec(BaseModel):
    """Import one model file and register it: scan, safe load, convert, gate on the scan."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    model: ImportSource
    gate: GateSpec = GateSpec()
    registry: RegisterSpec = Field(alias="register")

    def digest(self) -> str:
        """sha256 of the validated spec (the file is hashed as the run's source)."""
        return sha256_json(self.model_dump(mode="json", by_alias=True))
