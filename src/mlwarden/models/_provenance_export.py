"""Read a version's provenance (verified) and export it for a consumer without mlwarden.

``export_version`` writes the model file, ``model.sig`` (OpenSSF model-signing), the DSSE
provenance statement and the public key, then checks the written files with ``model_signing``
itself, so what leaves mlwarden is exactly what ``model_signing verify key`` accepts.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlwarden.errors import ParameterError, RecordNotFoundError, SignatureError
from mlwarden.models._manifest import ModelVersion
from mlwarden.models._provenance import (
    KEY_ROLE,
    PROVENANCE_ROLE,
    ROLES,
    SIGNATURE_ROLE,
    SLSA_PREDICATE,
    STATEMENT_TYPE,
    open_envelope,
    safe_file_name,
)
from mlwarden.models._registry import ModelRegistry

PROVENANCE_FILE = "provenance.intoto.jsonl"
SIGNATURE_FILE = "model.sig"
PUBLIC_KEY_FILE = "model-signing.pub"
VERIFY_FILE = "VERIFY.txt"


@dataclass(frozen=True)
class Provenance:
    """A version's verified provenance: its statement and the files a consumer checks."""

    version: ModelVersion
    statement: dict[str, Any]
    envelope: bytes
    signature: bytes
    public_pem: bytes

    @property
    def model_file(self) -> str:
        """The model's file name, as the statement's subject names it."""
        return str(self.statement["subject"][0].get("name", ""))


def _missing_reason(registry: ModelRegistry, version: ModelVersion) -> str:
    """Why a version has no provenance, as its record says (older versions say nothing)."""
    for record in registry.store.records("model_version", subject=version.manifest.name):
        if record.seq == version.record_seq:
            note = record.payload.get("provenance")
            if isinstance(note, dict) and note.get("skipped"):
                return str(note["skipped"])
    return "it was registered before mlwarden signed provenance"


def read_provenance(registry: ModelRegistry, ref: str) -> Provenance:
    """The provenance of ``ref``, once the manifest, its artifacts and the DSSE signature verify
    and the statement's subject is the registered model (name and sha256)."""
    version = registry.get(ref)
    registry.verify(version)
    artifacts = version.manifest.artifacts
    if any(role not in artifacts for role in ROLES):
        raise RecordNotFoundError(
            f"{version.ref} has no signed provenance: {_missing_reason(registry, version)}"
        )
    envelope = registry.store.read_artifact(artifacts[PROVENANCE_ROLE])
    public_pem = registry.store.read_artifact(artifacts[KEY_ROLE])
    try:
        parsed = json.loads(envelope)
    except ValueError as exc:
        raise SignatureError(f"{version.ref}: the provenance envelope is not JSON: {exc}") from exc
    statement = open_envelope(parsed, public_pem)
    subject = statement.get("subject") or [{}]
    digest = subject[0].get("digest", {}).get("sha256")
    if (
        statement.get("_type") != STATEMENT_TYPE
        or statement.get("predicateType") != SLSA_PREDICATE
        or digest != version.manifest.model_sha256
    ):
        raise SignatureError(
            f"{version.ref}: the provenance statement is not an in-toto SLSA provenance of its "
            f"model (subject sha256 {str(digest)[:12]}, model {version.manifest.model_sha256[:12]})"
        )
    if not safe_file_name(str(subject[0].get("name", ""))):
        raise SignatureError(
            f"{version.ref}: the provenance subject's name is not a plain file name"
        )
    signature = registry.store.read_artifact(artifacts[SIGNATURE_ROLE])
    return Provenance(version, statement, envelope, signature, public_pem)


def verify_command(folder: Path, model_file: str) -> str:
    """The ``model_signing`` command that checks an exported model, run from anywhere."""
    model, sig, key = (shlex.quote(str(folder / n)) for n in (model_file, SIGNATURE_FILE,
                                                               PUBLIC_KEY_FILE))  # fmt: skip
    return f"model_signing verify key {model} --signature {sig} --public_key {key}"


@dataclass(frozen=True)
class ExportedModel:
    """What ``export_version`` wrote and the command that verifies it."""

    provenance: Provenance
    files: list[Path]
    command: str


def export_version(registry: ModelRegistry, ref: str, folder: Path) -> ExportedModel:
    """Write ``ref``'s model, ``model.sig``, provenance and public key into ``folder``.

    Refuses to overwrite files already there. The written files are then verified with the
    ``model_signing`` library (when the ``sign`` extra is installed) before this returns.
    """
    found = read_provenance(registry, ref)
    model = registry.store.read_artifact(found.version.manifest.model_sha256)
    contents = {
        found.model_file: model,
        SIGNATURE_FILE: found.signature,
        PROVENANCE_FILE: found.envelope,
        PUBLIC_KEY_FILE: found.public_pem,
    }
    relative = verify_command(Path("."), found.model_file)
    contents[VERIFY_FILE] = (
        f"# {found.version.ref}: check the model without mlwarden (pip install model-signing),\n"
        f"# from this folder:\n{relative}\n"
    ).encode()
    taken = [name for name in contents if (folder / name).exists()]
    if taken:
        raise ParameterError(
            f"{folder} already holds {', '.join(taken)}; export into an empty or new folder"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in contents.items():
            (folder / name).write_bytes(data)
    except OSError as exc:
        raise ParameterError(f"cannot write the export to {folder}: {exc}") from exc
    _check_export(folder, found.model_file)
    return ExportedModel(
        found, [folder / n for n in contents], verify_command(folder, found.model_file)
    )


def _check_export(folder: Path, model_file: str) -> None:
    """Verify the exported model with ``model_signing`` as a consumer will (skipped without it)."""
    try:
        from model_signing import verifying
    except ImportError:
        return
    config = verifying.Config()  # type: ignore[no-untyped-call]
    config.use_elliptic_key_verifier(public_key=folder / PUBLIC_KEY_FILE)
    try:
        config.verify(folder / model_file, folder / SIGNATURE_FILE)
    except ValueError as exc:
        raise SignatureError(
            f"the exported {model_file} does not verify with model_signing: {exc}"
        ) from exc
