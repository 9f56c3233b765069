"""Every registered version carries provenance others can verify without mlwarden: an in-toto
SLSA statement signed as DSSE, and an OpenSSF model-signing signature of the model file."""

from __future__ import annotations

import base64
import hashlib
import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mlwarden import __version__
from mlwarden.errors import ParameterError, RecordNotFoundError, SignatureError
from mlwarden.lineage import MODEL_KEY_ENV, LineageStore, ModelSigningKey, Signer
from mlwarden.models import (
    MEDIA_TYPE,
    ModelRegistry,
    ModelVersion,
    export_version,
    read_provenance,
    version_record,
)
from mlwarden.pipeline import LocalExecutor, RunResult, parse_spec
from tests.conftest import FAST_SPEC

ROLES = {"provenance", "model_signature", "provenance_key"}
MODEL_SIGNING = Path(sys.executable).parent / "model_signing"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LineageStore, RunResult]]:
    """A store where the fast pipeline registered german@1 with the session's key dir."""
    store = LineageStore(tmp_path_factory.mktemp("provenance") / "store")
    result = LocalExecutor(store).run(parse_spec(FAST_SPEC))
    assert result.model_version == "german@1", result.error
    yield store, result
    store.close()


@pytest.fixture
def registry(trained: tuple[LineageStore, RunResult]) -> ModelRegistry:
    """The registry of ``trained``; its version has provenance only with the ``sign`` extra."""
    pytest.importorskip("model_signing")
    return ModelRegistry(trained[0])


def register_directly(
    store: LineageStore, signer: Signer, model: bytes, **artifacts: bytes
) -> ModelVersion:
    """Register ``model`` through ``version_record`` outside a pipeline, as an import does."""
    with store.transaction() as tx:
        sha = store.put_artifact(model, name="model.skops", media_type=MEDIA_TYPE, tx=tx)
        extra = {
            role: store.put_artifact(data, name=f"{role}.bin", media_type="x", tx=tx)
            for role, data in artifacts.items()
        }
    with store.transaction() as tx:
        kind, subject, payload = version_record(
            tx,
            signer,
            name="imported",
            model_sha256=sha,
            media_type=MEDIA_TYPE,
            artifacts=extra,
            metrics={},
            gate={"mode": "fail-closed", "passed": True},
            spec_sha256="0" * 64,
            run_id="import-1",
            created_at=datetime.now(UTC),
        )
        tx.append(kind, subject, payload)
    return ModelRegistry(store).get("imported@latest")


def dsse_statement(envelope: dict[str, Any], public_pem: bytes) -> dict[str, Any]:
    """Check a DSSE envelope as any in-toto verifier does (PAE, ECDSA P-256), independently."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    body = base64.b64decode(envelope["payload"])
    kind = envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)
    key = serialization.load_pem_public_key(public_pem)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    sig = base64.b64decode(envelope["signatures"][0]["sig"])
    key.verify(sig, pae, ec.ECDSA(hashes.SHA256()))  # raises InvalidSignature
    statement: dict[str, Any] = json.loads(body)
    return statement


def test_the_statement_is_a_dsse_signed_slsa_provenance_of_the_registered_model(
    trained: tuple[LineageStore, RunResult], registry: ModelRegistry
) -> None:
    store, result = trained
    version = registry.get("german@1")
    registry.verify(version)  # the three artifacts are listed in the signed manifest
    arts = version.manifest.artifacts
    assert set(arts) >= ROLES
    envelope = json.loads(store.read_artifact(arts["provenance"]))
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    statement = dsse_statement(envelope, store.read_artifact(arts["provenance_key"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    model_bytes = store.read_artifact(version.manifest.model_sha256)
    assert statement["subject"] == [
        {"name": "model.skops", "digest": {"sha256": hashlib.sha256(model_bytes).hexdigest()}}
    ]
    build = statement["predicate"]["buildDefinition"]
    spec = build["externalParameters"]["spec"]
    assert spec["digest"]["sha256"] == version.manifest.spec_sha256
    assert "dataset: german" in spec["content"]
    deps = {d["digest"]["sha256"]: d["name"] for d in build["resolvedDependencies"]}
    steps = {s.step: s for s in result.steps}
    for step in ("ingest", "split", "train", "evaluate", "audit"):  # the code of each step
        assert deps[steps[step].code_version] == f"mlwarden step {step}"
    for sha in steps["ingest"].outputs.values():  # and the data it read
        assert sha in deps
    run = statement["predicate"]["runDetails"]
    assert run["builder"]["id"] == f"pkg:pypi/mlwarden@{__version__}"
    assert run["metadata"]["invocationId"] == version.manifest.run_id == result.run_id


def test_read_provenance_verifies_and_refuses_a_changed_statement(
    trained: tuple[LineageStore, RunResult], registry: ModelRegistry
) -> None:
    found = read_provenance(registry, "german@1")
    assert found.statement["subject"][0]["digest"]["sha256"] == found.version.manifest.model_sha256
    store = trained[0]
    path = store.artifacts.path(found.version.manifest.artifacts["provenance"])
    original = path.read_bytes()
    forged = json.loads(original)
    statement = json.loads(base64.b64decode(forged["payload"]))
    statement["subject"][0]["digest"]["sha256"] = "f" * 64
    forged["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.chmod(0o644)
    try:
        path.write_bytes(json.dumps(forged).encode())
        with pytest.raises(SignatureError, match="artifact provenance fails"):
            read_provenance(registry, "german@1")
    finally:
        path.write_bytes(original)
        path.chmod(0o444)


def _verify(model: Path, sig: Path, pub: Path) -> subprocess.CompletedProcess[str]:
    command = [str(MODEL_SIGNING), "verify", "key", str(model)]
    command += ["--signature", str(sig), "--public_key", str(pub)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_an_export_verifies_with_the_model_signing_cli_and_tampering_does_not(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    assert MODEL_SIGNING.exists(), "the model_signing CLI is not installed beside python"
    exported = export_version(registry, "german@1", tmp_path / "out")
    out = tmp_path / "out"
    model, sig, pub = out / "model.skops", out / "model.sig", out / "model-signing.pub"
    assert {p.name for p in exported.files} >= {
        "model.skops", "model.sig", "provenance.intoto.jsonl", "model-signing.pub", "VERIFY.txt"
    }  # fmt: skip
    assert (
        hashlib.sha256(model.read_bytes()).hexdigest()
        == exported.provenance.version.manifest.model_sha256
    )
    argv = shlex.split(exported.command)  # the exact command printed for the consumer
    assert argv[:3] == ["model_signing", "verify", "key"]
    ok = subprocess.run([str(MODEL_SIGNING), *argv[1:]], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr

    changed = tmp_path / "changed"
    changed.mkdir()
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    (changed / "model.skops").write_bytes(bytes(data))
    assert _verify(changed / "model.skops", sig, pub).returncode != 0

    bundle = json.loads(sig.read_bytes())
    raw = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[-1] ^= 0x01
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    (changed / "model.sig").write_text(json.dumps(bundle))
    assert _verify(model, changed / "model.sig", pub).returncode != 0

    other = ModelSigningKey.load_or_create(tmp_path / "other-keys")
    (changed / "other.pub").write_bytes(other.public_pem())
    assert _verify(model, sig, changed / "other.pub").returncode != 0


def test_an_export_never_overwrites(registry: ModelRegistry, tmp_path: Path) -> None:
    (tmp_path / "model.sig").write_text("mine")
    with pytest.raises(ParameterError, match=r"already holds model\.sig"):
        export_version(registry, "german@1", tmp_path)
    assert (tmp_path / "model.sig").read_text() == "mine"


def test_without_a_model_signing_key_a_version_registers_and_says_why(
    trained: tuple[LineageStore, RunResult], tmp_path: Path
) -> None:
    store = LineageStore(tmp_path / "store")
    try:
        # An in-memory (or environment) signing key has no key dir to keep an EC key beside.
        result = LocalExecutor(store).run(parse_spec(FAST_SPEC), signer=Signer.generate())
        assert result.model_version == "german@1", result.error
        version = ModelRegistry(store).versions("german")[0]
        assert not ROLES & set(version.manifest.artifacts)
        # the same model bytes as the run that signed provenance
        assert (
            version.manifest.model_sha256
            == trained[0].records("model_version")[0].payload["manifest"]["model_sha256"]
        )
        note = store.records("model_version")[0].payload["provenance"]
        assert "not kept in a key directory" in note["skipped"]
    finally:
        store.close()


def test_required_provenance_fails_closed(
    store: LineageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLWARDEN_REQUIRE_PROVENANCE", "1")
    with pytest.raises(SignatureError, match="MLWARDEN_REQUIRE_PROVENANCE is set but"):
        register_directly(store, Signer.generate(), b"model")
    assert store.records("model_version") == []


def test_without_the_sign_extra_provenance_is_skipped_with_the_install_line(
    store: LineageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "model_signing", None)
    monkeypatch.setitem(sys.modules, "model_signing.signing", None)
    version = register_directly(store, Signer.load_or_create(), b"model")
    with pytest.raises(RecordNotFoundError, match=r"pip install 'mlwarden\[sign\]'"):
        read_provenance(ModelRegistry(store), version.ref)


def test_an_imported_models_original_file_is_a_resolved_dependency(store: LineageStore) -> None:
    pytest.importorskip("model_signing")
    original = b"the pickle the team brought"
    version = register_directly(store, Signer.load_or_create(), b"model", original=original)
    found = read_provenance(ModelRegistry(store), version.ref)
    deps = found.statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert {"name": "original.bin", "digest": {"sha256": hashlib.sha256(original).hexdigest()},
            "mediaType": "x"} in deps  # fmt: skip
    assert found.statement["predicate"]["runDetails"]["metadata"]["invocationId"] == "import-1"


def test_the_model_signing_key_is_created_once_private_beside_the_signing_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MODEL_KEY_ENV, raising=False)
    signer = Signer.load_or_create(tmp_path / "keys")
    key = ModelSigningKey.for_signer(signer)
    assert key is not None and key.created
    assert key.path == tmp_path / "keys" / "model-signing.key"
    assert key.path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys" / "model-signing.pub").read_bytes() == key.public_pem()
    again = ModelSigningKey.for_signer(Signer.load_or_create(tmp_path / "keys"))
    assert again is not None and not again.created and again.key_id == key.key_id


def test_a_model_signing_key_that_is_not_elliptic_curve_is_refused(
    store: LineageStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ed25519 = Signer.generate().save(tmp_path / "keys")
    monkeypatch.setenv(MODEL_KEY_ENV, str(ed25519))
    with pytest.raises(SignatureError, match="not an elliptic-curve P-256"):
        register_directly(store, Signer.load_or_create(), b"model")
    assert store.records("model_version") == []


def test_a_dsse_envelope_opens_only_with_its_key_and_unchanged(tmp_path: Path) -> None:
    from mlwarden.models._provenance import dsse_envelope, open_envelope

    key = ModelSigningKey.load_or_create(tmp_path / "a")
    statement = {"_type": "https://in-toto.io/Statement/v1", "subject": []}
    envelope = dsse_envelope(statement, key)
    assert open_envelope(envelope, key.public_pem()) == statement
    assert dsse_statement(envelope, key.public_pem()) == statement  # as other verifiers see it
    other = ModelSigningKey.load_or_create(tmp_path / "b")
    with pytest.raises(SignatureError, match="does not verify with the model-signing key"):
        open_envelope(envelope, other.public_pem())
    changed = {**envelope, "payload": base64.b64encode(b'{"subject": ["x"]}').decode()}
    with pytest.raises(SignatureError, match="does not verify"):
        open_envelope(changed, key.public_pem())
    with pytest.raises(SignatureError, match=r"malformed .*expected DSSE JSON"):
        open_envelope({"payload": "!!"}, key.public_pem())
