"""Provenance others can verify: an in-toto SLSA statement and an OpenSSF model-signing signature.

Each registered version gets three artifacts, listed in its signed manifest (so the pinned
ed25519 key vouches for them):

- ``provenance``: an in-toto Statement v1 with the SLSA provenance v1 predicate (subject: the
  model file; external parameters: the spec; resolved dependencies: the source data, imported
  files and step code the model came from; run details: mlwarden and the run), signed as a DSSE
  envelope with the model-signing key;
- ``model_signature``: the model file signed by the OpenSSF ``model_signing`` library, a bundle
  that ``model_signing verify key`` checks offline, without mlwarden;
- ``provenance_key``: the elliptic-curve public key (PEM) both verify with.

Without a model-signing key (an in-memory or environment signing key and no
``$MLWARDEN_MODEL_SIGNING_KEY_FILE``) or without the ``sign`` extra, the version still registers
and its record says why it has no provenance; ``$MLWARDEN_REQUIRE_PROVENANCE=1`` refuses instead.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mlwarden._version import __version__
from mlwarden.errors import ParameterError, RecordNotFoundError, SignatureError
from mlwarden.lineage import (
    Appender,
    LineageStore,
    ModelSigningKey,
    Signer,
    canonical_json,
    ec_verifies,
    upstream,
)

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PREDICATE = "https://slsa.dev/provenance/v1"
DSSE_PAYLOAD_TYPE = "application/vnd.in-toto+json"
DSSE_MEDIA_TYPE = "application/vnd.dev.dsse.envelope+json"
SIGSTORE_BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
#: What built the model: a registration by mlwarden (a pipeline run, or an import).
BUILD_TYPE = "urn:mlwarden:build-type:registration:v1"
BUILDER_ID = f"pkg:pypi/mlwarden@{__version__}"
PROVENANCE_ROLE = "provenance"
SIGNATURE_ROLE = "model_signature"
KEY_ROLE = "provenance_key"
ROLES = (PROVENANCE_ROLE, SIGNATURE_ROLE, KEY_ROLE)
REQUIRE_ENV = "MLWARDEN_REQUIRE_PROVENANCE"
#: A spec up to this size goes into the statement verbatim; a bigger one by digest only.
_SPEC_CONTENT_LIMIT = 65536
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def safe_file_name(name: str) -> bool:
    """Whether ``name`` is a plain file name, safe to write inside a folder (no path parts)."""
    return bool(_SAFE_NAME.match(name)) and name not in (".", "..")


def model_file_name(store: LineageStore, model_sha256: str) -> str:
    """The model's recorded file name (``model.skops``...), else ``model.bin``: what the
    statement's subject and the exported file are called."""
    record = store.artifact_record(model_sha256)
    name = str(record.payload.get("name", "")) if record is not None else ""
    return name if safe_file_name(name) else "model.bin"


def dsse_pae(payload_type: str, body: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding: the bytes a DSSE signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def dsse_envelope(statement: dict[str, Any], key: ModelSigningKey) -> dict[str, Any]:
    """``statement`` signed as a DSSE envelope (payload and signature base64, as in-toto has it)."""
    body = canonical_json(statement)
    signature = key.sign(dsse_pae(DSSE_PAYLOAD_TYPE, body))
    return {
        "payloadType": DSSE_PAYLOAD_TYPE,
        "payload": base64.b64encode(body).decode(),
        "signatures": [{"keyid": key.key_id, "sig": base64.b64encode(signature).decode()}],
    }


def open_envelope(envelope: dict[str, Any], public_pem: bytes) -> dict[str, Any]:
    """The statement a DSSE envelope carries, once a signature by ``public_pem`` verifies."""
    try:
        if envelope["payloadType"] != DSSE_PAYLOAD_TYPE:
            raise SignatureError(
                f"the provenance envelope's payloadType is {envelope['payloadType']!r}, "
                f"expected {DSSE_PAYLOAD_TYPE!r}"
            )
        body = base64.b64decode(envelope["payload"], validate=True)
        signatures = [base64.b64decode(s["sig"], validate=True) for s in envelope["signatures"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise SignatureError(
            f"the provenance envelope is malformed ({type(exc).__name__}: {exc}); expected DSSE "
            "JSON with payloadType, payload and signatures[].sig"
        ) from exc
    message = dsse_pae(DSSE_PAYLOAD_TYPE, body)
    if not any(ec_verifies(public_pem, message, sig) for sig in signatures):
        raise SignatureError(
            "the provenance statement's DSSE signature does not verify with the model-signing "
            "key: the statement or its signature was changed"
        )
    try:
        statement = json.loads(body)
    except ValueError as exc:
        raise SignatureError(f"the signed provenance statement is not JSON: {exc}") from exc
    if not isinstance(statement, dict):
        raise SignatureError("the signed provenance statement is not a JSON object")
    return statement


def _descriptor(name: str, sha256: str, **extra: Any) -> dict[str, Any]:
    """An in-toto ResourceDescriptor naming a file by its sha256."""
    return {"name": name, "digest": {"sha256": sha256}, **extra}


def resolved_dependencies(
    store: LineageStore, model_sha256: str, artifacts: dict[str, str]
) -> list[dict[str, Any]]:
    """The source files (data, imported model files) and step code the version came from.

    Walks the lineage upstream of the model and of each other artifact of the version: every
    artifact no step produced (or a step produced from no input, as a bundled dataset's table)
    is a source; every step that ran contributes its code version.
    """
    sources: dict[str, dict[str, Any]] = {}
    code: dict[str, dict[str, Any]] = {}
    for role, sha in {"model": model_sha256, **artifacts}.items():
        try:
            stack = [upstream(store, sha, role)]
        except RecordNotFoundError:  # bytes recorded without an artifact record
            if sha != model_sha256:
                sources.setdefault(sha, _descriptor(role, sha))
            continue
        while stack:
            node = stack.pop()
            made, info = node.produced_by, node.artifact
            # A source file, or what a step made from nothing it was given (a bundled dataset)
            if (made is None or not node.inputs) and info.sha256 != model_sha256:
                sources.setdefault(
                    info.sha256, _descriptor(info.name, info.sha256, mediaType=info.media_type)
                )
            if made is None:
                continue
            code.setdefault(
                made.code_version,
                _descriptor(
                    f"mlwarden step {made.step}",
                    made.code_version,
                    annotations={"step": made.step, "execution": made.id},
                ),
            )
            stack.extend(node.inputs)
    ordered = sorted(sources.values(), key=lambda d: (d["name"], d["digest"]["sha256"]))
    return ordered + sorted(code.values(), key=lambda d: d["name"])


def _spec_parameters(store: LineageStore, spec_sha256: str, run_id: str) -> dict[str, Any]:
    """The spec as the run recorded it: its digest, and its text when small enough."""
    spec: dict[str, Any] = {"digest": {"sha256": spec_sha256}}
    started = store.records("run_started", subject=run_id)
    document = started[0].payload.get("spec_artifact") if started else None
    if isinstance(document, str):
        data = store.read_artifact(document)
        spec["document"] = _descriptor("spec.yaml", document)
        if len(data) <= _SPEC_CONTENT_LIMIT:
            spec["content"] = data.decode("utf-8", errors="replace")
    return spec


@dataclass(frozen=True)
class Registration:
    """What a version being registered is: its name and number, model, artifacts and run."""

    name: str
    version: int
    model_sha256: str
    artifacts: dict[str, str]
    spec_sha256: str
    run_id: str
    created_at: datetime


def provenance_statement(store: LineageStore, facts: Registration) -> dict[str, Any]:
    """The in-toto Statement v1 (SLSA provenance v1) of a version about to be registered."""
    run_id, model_sha256 = facts.run_id, facts.model_sha256
    started = store.records("run_started", subject=run_id)
    metadata: dict[str, Any] = {"invocationId": run_id, "finishedOn": _rfc3339(facts.created_at)}
    if started:
        metadata["startedOn"] = _rfc3339(started[0].created_at)
    return {
        "_type": STATEMENT_TYPE,
        "subject": [_descriptor(model_file_name(store, model_sha256), model_sha256)],
        "predicateType": SLSA_PREDICATE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"spec": _spec_parameters(store, facts.spec_sha256, run_id)},
                "internalParameters": {"model": f"{facts.name}@{facts.version}"},
                "resolvedDependencies": resolved_dependencies(store, model_sha256, facts.artifacts),
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {"mlwarden": __version__}},
                "metadata": metadata,
            },
        },
    }


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def sign_model_file(data: bytes, file_name: str, key: ModelSigningKey) -> bytes:
    """The OpenSSF ``model_signing`` signature (a sigstore bundle) of the model file ``data``."""
    from model_signing import signing

    with tempfile.TemporaryDirectory(prefix="mlwarden-sign-") as tmp:
        model, signature = Path(tmp) / file_name, Path(tmp) / "model.sig"
        model.write_bytes(data)
        try:
            config = signing.Config()  # type: ignore[no-untyped-call]
            config.use_elliptic_key_signer(private_key=key.path).sign(model, signature)
        except (OSError, ValueError, TypeError) as exc:
            raise SignatureError(
                f"model_signing could not sign {file_name} with {key.path}: {exc}"
            ) from exc
        return signature.read_bytes()


def _unavailable(signer: Signer) -> tuple[ModelSigningKey | None, str | None]:
    """The model-signing key, else why there is none (no key dir, no ``sign`` extra).

    The key is read (or created) first, so a bad key is refused whether or not the extra is in.
    """
    key = ModelSigningKey.for_signer(signer)
    if key is None:
        return None, (
            f"the signing key is not kept in a key directory (it comes from {signer.source}) "
            "and no model-signing key is given: set $MLWARDEN_MODEL_SIGNING_KEY_FILE to an EC "
            "P-256 private key PEM"
        )
    try:
        import model_signing.signing  # noqa: F401
    except ImportError as exc:
        return None, (
            f"the sign extra is not installed ({exc}); pip install 'mlwarden[sign]' to sign "
            "provenance"
        )
    return key, None


def attach_provenance(
    tx: Appender, signer: Signer, facts: Registration
) -> tuple[dict[str, str], dict[str, Any]]:
    """Sign and store the provenance artifacts of a version being registered in ``tx``.

    Returns the artifacts to list in its manifest (role -> sha256) and a note for its record:
    what was signed with which key, or why nothing was (``$MLWARDEN_REQUIRE_PROVENANCE=1``
    turns that into a ``SignatureError``: nothing is registered).
    """
    name = facts.name
    taken = sorted(set(ROLES) & set(facts.artifacts))
    if taken:
        raise ParameterError(f"{name}: artifact roles {taken} are reserved for provenance")
    store = tx.store
    key, why = _unavailable(signer) if store is not None else (None, "no store to write to")
    if key is None or store is None:
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            raise SignatureError(f"{name} not registered: ${REQUIRE_ENV} is set but {why}")
        return {}, {"skipped": why}
    statement = provenance_statement(store, facts)
    file_name = statement["subject"][0]["name"]
    envelope = json.dumps(dsse_envelope(statement, key), sort_keys=True) + "\n"
    bundle = sign_model_file(store.read_artifact(facts.model_sha256), file_name, key)
    added = {
        PROVENANCE_ROLE: store.put_artifact(
            envelope.encode(), name="provenance.intoto.jsonl", media_type=DSSE_MEDIA_TYPE, tx=tx
        ),
        SIGNATURE_ROLE: store.put_artifact(
            bundle, name="model.sig", media_type=SIGSTORE_BUNDLE_MEDIA_TYPE, tx=tx
        ),
        KEY_ROLE: store.put_artifact(
            key.public_pem(), name="model-signing.pub", media_type="application/x-pem-file", tx=tx
        ),
    }
    note = {"model_signing_key": key.key_id, "file": file_name}
    if key.created:
        note["created_key"] = str(key.path)
    return added, note
