"""Registered model versions: signed manifests in the lineage store, verified before loading."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from mlwarden.errors import ModelError, RecordNotFoundError, SignatureError
from mlwarden.lineage import LineageStore, Record, canonical_json
from mlwarden.models._adapter import SklearnAdapter
from mlwarden.models._persist import MEDIA_TYPE, loads_model
from mlwarden.models._signing import Signer, load_public_key, verify_signature

if TYPE_CHECKING:
    from mlwarden.models._charlm import CharLM
    from mlwarden.models._sdn import EarlyExitNetwork

MANIFEST_FORMAT = 1
#: Media type of a registered character language model: safetensors weights, JSON config.
LANGUAGE_MODEL_MEDIA_TYPE = "application/vnd.mlwarden.charlm+safetensors"
#: Media type of a registered early-exit network (Shallow-Deep Network): safetensors, JSON.
EARLY_EXIT_MEDIA_TYPE = "application/vnd.mlwarden.sdn+safetensors"
_REF = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(@(?P<version>latest|\d+|[a-z][a-z0-9_-]*))?$")
_STAGE = re.compile(r"^[a-z][a-z0-9_-]*$")


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

    def message(self) -> bytes:
        """The exact bytes the signature covers."""
        return canonical_json(self.model_dump(mode="json"))


class ModelVersion(BaseModel):
    """A manifest, its signature and where it sits in the lineage chain."""

    manifest: Manifest
    signature: str
    record_seq: int

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.manifest.name}@{self.manifest.version}"


def _version_of(record: Record) -> ModelVersion:
    return ModelVersion(
        manifest=Manifest.model_validate(record.payload["manifest"]),
        signature=record.payload["signature"],
        record_seq=record.seq,
    )


class ModelRegistry:
    """Reads model versions from a lineage store and loads them only once they verify."""

    def __init__(self, store: LineageStore) -> None:
        self.store = store

    @property
    def keys_dir(self) -> Any:
        """Where the signing key pair lives: beside the store."""
        return self.store.root / "keys"

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        """Every registered version, oldest first, optionally of one model name."""
        return [_version_of(r) for r in self.store.records("model_version", subject=name)]

    def get(self, ref: str) -> ModelVersion:
        """Resolve ``name``, ``name@latest``, ``name@N`` or ``name@STAGE`` to a version."""
        match = _REF.match(ref)
        if match is None:
            raise RecordNotFoundError(
                f"model reference {ref!r} is malformed; expected NAME, NAME@latest, NAME@N "
                "or NAME@STAGE"
            )
        name, version = match["name"], match["version"] or "latest"
        found = self.versions(name)
        if not found:
            known = sorted({v.manifest.name for v in self.versions()})
            raise RecordNotFoundError(
                f"no model named {name!r} is registered; registered: {known or 'none'}"
            )
        if version == "latest":
            return found[-1]
        if not version.isdigit():
            return self._staged(name, version, found)
        for candidate in found:
            if candidate.manifest.version == int(version):
                return candidate
        raise RecordNotFoundError(
            f"{name} has no version {version}; versions are 1..{found[-1].manifest.version}"
        )

    def _staged(self, name: str, stage: str, found: list[ModelVersion]) -> ModelVersion:
        """The version most recently promoted to ``stage`` (its signed promotion verified)."""
        records = self.store.records("model_stage", subject=name, key=stage, newest_first=True)
        if not records:
            raise RecordNotFoundError(
                f"no version of {name} was promoted to {stage!r}; "
                f"mlwarden models promote {name}@N --stage {stage}"
            )
        payload = records[0].payload
        public_key = load_public_key(self.keys_dir)
        claim = {k: v for k, v in payload.items() if k != "signature"}
        if payload.get("signer") != public_key.public_bytes_raw().hex():
            raise SignatureError(f"the promotion of {name} to {stage} was signed by another key")
        verify_signature(public_key, canonical_json(claim), payload["signature"])
        for candidate in found:
            if candidate.manifest.version == payload["version"]:
                if candidate.manifest.model_sha256 != payload["model_sha256"]:
                    raise SignatureError(
                        f"{name}@{stage} names a model that is not {candidate.ref}"
                    )
                return candidate
        raise RecordNotFoundError(f"{name}@{stage} names version {payload['version']}, not found")

    def promote(self, ref: str, stage: str, signer: Signer) -> ModelVersion:
        """Point ``name@stage`` at a verified version: a signed record, appended (never moved)."""
        if not _STAGE.match(stage) or stage == "latest":
            raise RecordNotFoundError(
                f"stage {stage!r} must be lowercase letters, digits, - or _, and not 'latest'"
            )
        version = self.get(ref)
        self.verify(version)
        claim = {
            "name": version.manifest.name,
            "version": version.manifest.version,
            "stage": stage,
            "model_sha256": version.manifest.model_sha256,
            "signer": signer.public_key_hex,
        }
        payload = {**claim, "signature": signer.sign(canonical_json(claim))}
        self.store.append("model_stage", version.manifest.name, payload, key=stage)
        return version

    def verify(self, version: ModelVersion) -> None:
        """Check the signature, the signer, the lineage head and every artifact's bytes."""
        manifest = version.manifest
        public_key = load_public_key(self.keys_dir)
        if public_key.public_bytes_raw().hex() != manifest.signer:
            raise SignatureError(f"{version.ref} was signed by a key this store does not trust")
        verify_signature(public_key, manifest.message(), version.signature)
        head = self.store.record_by_hash(manifest.lineage_head)
        if head is None or head.seq >= version.record_seq:
            raise SignatureError(f"{version.ref} names a lineage head that is not in the chain")
        for role, sha in {"model": manifest.model_sha256, **manifest.artifacts}.items():
            try:
                self.store.read_artifact(sha)
            except Exception as exc:
                raise SignatureError(f"{version.ref}: artifact {role} fails: {exc}") from exc

    def imputation(self, version: ModelVersion) -> dict[str, Any] | None:
        """The fill values fitted on this version's training rows, to apply before predicting.

        Returned as the stored JSON (``mlwarden.data.Imputation`` reads it); verified first.
        """
        sha = version.manifest.artifacts.get("imputation")
        if sha is None:
            return None
        self.verify(version)
        loaded: dict[str, Any] = json.loads(self.store.read_artifact(sha))
        return loaded

    def load(self, ref: str, budget: int | None = None) -> tuple[ModelVersion, SklearnAdapter]:
        """Verify a registered version, then load its model (skops, trusted types only)."""
        version = self.get(ref)
        if version.manifest.model_media_type != MEDIA_TYPE:
            raise ModelError(
                f"{version.ref} is a {version.manifest.model_media_type} model, not a "
                f"scikit-learn one ({MEDIA_TYPE}); a language model is audited with "
                "--checks canary, an early-exit network with --checks slowdown"
            )
        self.verify(version)
        estimator = loads_model(self.store.read_artifact(version.manifest.model_sha256))
        return version, SklearnAdapter(estimator, budget=budget)

    def load_early_exit(self, ref: str) -> tuple[ModelVersion, EarlyExitNetwork, dict[str, Any]]:
        """Verify a registered early-exit network, then load it and its threshold and split."""
        from mlwarden.models._sdn import load_sdn

        version = self.get(ref)
        if version.manifest.model_media_type != EARLY_EXIT_MEDIA_TYPE:
            raise ModelError(
                f"{version.ref} is a {version.manifest.model_media_type} model, not an "
                f"early-exit network ({EARLY_EXIT_MEDIA_TYPE})"
            )
        self.verify(version)
        info = json.loads(self.store.read_artifact(version.manifest.artifacts["info"]))
        model = load_sdn(self.store.read_artifact(version.manifest.model_sha256))
        return version, model, info

    def load_language_model(self, ref: str) -> tuple[ModelVersion, CharLM]:
        """Verify a registered character language model, then load it (safetensors)."""
        from mlwarden.models._charlm import load_char_lm

        version = self.get(ref)
        if version.manifest.model_media_type != LANGUAGE_MODEL_MEDIA_TYPE:
            raise ModelError(
                f"{version.ref} is a {version.manifest.model_media_type} model, not a "
                f"character language model ({LANGUAGE_MODEL_MEDIA_TYPE})"
            )
        self.verify(version)
        return version, load_char_lm(self.store.read_artifact(version.manifest.model_sha256))
