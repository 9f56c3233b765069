"""The signed manifest of a model version and the signed claim of a stage promotion.

Format 2 binds each version to the one before it: the manifest carries the sha256 of the
previous version's manifest (``MANIFEST_GENESIS`` for a name's first version), and a promotion
carries the hash of the previous promotion to the same stage. A copied (replayed) record then
no longer fits where it is appended. Format 1 manifests and promotions, written before, still
load: they verify as before but are reported as legacy (not bound to their predecessor).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, model_validator

from mlwarden.errors import FormatError
from mlwarden.lineage import Record, canonical_json, sha256_bytes

#: Format written now: the manifest names its predecessor's manifest hash.
MANIFEST_FORMAT = 2
#: Format written before rollback protection: no predecessor link.
LEGACY_MANIFEST_FORMAT = 1
#: What a name's first version (or a stage's first promotion) names as its predecessor.
MANIFEST_GENESIS = "0" * 64
#: Format of a stage promotion claim that links to the previous promotion.
PROMOTION_FORMAT = 2
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Manifest(BaseModel):
    """What a registered model version is made of; its canonical JSON is what gets signed."""

    format: int = MANIFEST_FORMAT
    name: str
    version: int
    model_sha256: str
    model_media_type: str
    artifacts: dict[str, str]
    metrics: dict[str, Any]
    gate: dict[str, Any]
    lineage_head: str
    spec_sha256: str
    run_id: str
    signer: str
    created_at: datetime
    previous_manifest_sha256: str | None = None

    @model_validator(mode="after")
    def _check_format(self) -> Manifest:
        if self.format == LEGACY_MANIFEST_FORMAT:
            if self.previous_manifest_sha256 is not None:
                raise FormatError("a format 1 manifest has no previous_manifest_sha256")
        elif self.format == MANIFEST_FORMAT:
            if not _SHA256.match(self.previous_manifest_sha256 or ""):
                raise FormatError(
                    "a format 2 manifest needs previous_manifest_sha256: 64 lowercase hex digits"
                )
        else:
            raise FormatError(
                f"unknown manifest format {self.format}; this reader knows 1 and {MANIFEST_FORMAT}"
            )
        if self.version < 1:
            raise FormatError(f"version must be 1 or more, got {self.version}")
        return self

    @property
    def legacy(self) -> bool:
        """True for a format 1 manifest, which is not bound to the version before it."""
        return self.format == LEGACY_MANIFEST_FORMAT

    def message(self) -> bytes:
        """The exact bytes the signature covers (a legacy manifest's as it was signed)."""
        data = self.model_dump(mode="json")
        if self.legacy:
            data.pop("previous_manifest_sha256")
        return canonical_json(data)

    def sha256(self) -> str:
        """Hash of the signed bytes: what the next version names as its predecessor."""
        return sha256_bytes(self.message())


class ModelVersion(BaseModel):
    """A manifest, its signature and where it sits in the lineage chain."""

    manifest: Manifest
    signature: str
    record_seq: int

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.manifest.name}@{self.manifest.version}"


def version_of(record: Record) -> ModelVersion:
    """Parse a ``model_version`` record; raises ``ValueError`` when its payload is malformed."""
    payload = record.payload
    if not isinstance(payload.get("signature"), str) or "manifest" not in payload:
        raise FormatError("the payload needs a manifest and a signature")
    return ModelVersion(
        manifest=Manifest.model_validate(payload["manifest"]),
        signature=payload["signature"],
        record_seq=record.seq,
    )


def promotion_claim(payload: dict[str, Any]) -> dict[str, Any]:
    """A promotion record's payload without its signature: the bytes that were signed."""
    return {k: v for k, v in payload.items() if k != "signature"}


def promotion_sha256(payload: dict[str, Any]) -> str:
    """Hash of a promotion's signed claim: what the next promotion names as its predecessor."""
    return sha256_bytes(canonical_json(promotion_claim(payload)))
