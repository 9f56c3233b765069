"""Registered model versions: signed manifests in the lineage store, verified before loading."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from mlwarden.errors import (
    CapabilityError,
    IntegrityError,
    ModelError,
    RecordNotFoundError,
    SignatureError,
    UntrustedKeyError,
)
from mlwarden.lineage import (
    LineageStore,
    Problem,
    Signer,
    TrustPolicy,
    canonical_json,
    exposure_warnings,
    key_id,
    store_policy,
    store_private_key,
)
from mlwarden.models._adapter import ModelAdapter, SklearnAdapter
from mlwarden.models._history import check_promotions, check_versions
from mlwarden.models._import import (
    ONNX_MEDIA_TYPE,
    STATE_DICT_MEDIA_TYPE,
    adapter_for,
    imported_trusted_types,
)
from mlwarden.models._manifest import (
    MANIFEST_GENESIS,
    PROMOTION_FORMAT,
    ModelVersion,
    promotion_claim,
    promotion_sha256,
    version_of,
)
from mlwarden.models._persist import MEDIA_TYPE, loads_model
from mlwarden.models._torch_classifier import TORCH_MEDIA_TYPE

if TYPE_CHECKING:
    from mlwarden.models._charlm import CharLM
    from mlwarden.models._sdn import EarlyExitNetwork

#: Media type of a registered character language model: safetensors weights, JSON config.
LANGUAGE_MODEL_MEDIA_TYPE = "application/vnd.mlwarden.charlm+safetensors"
#: Media type of a registered early-exit network (Shallow-Deep Network): safetensors, JSON.
EARLY_EXIT_MEDIA_TYPE = "application/vnd.mlwarden.sdn+safetensors"
#: Why a registered media type cannot answer as a classifier of table rows, and what would.
_NOT_RUNNABLE = {
    STATE_DICT_MEDIA_TYPE: "torch weights without the network's architecture; save the "
    "module with mlwarden.models.save_torch_classifier (or export ONNX) and register that",
    LANGUAGE_MODEL_MEDIA_TYPE: "a character language model generates text; it does not "
    "classify table rows",
    EARLY_EXIT_MEDIA_TYPE: "an early-exit network; load it with load_early_exit",
}
_REF = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(@(?P<version>latest|\d+|[a-z][a-z0-9_-]*))?$")
_STAGE = re.compile(r"^[a-z][a-z0-9_-]*$")


class ModelRegistry:
    """Reads model versions from a lineage store and loads them only once they verify."""

    def __init__(self, store: LineageStore, trust: TrustPolicy | None = None) -> None:
        self.store = store
        self._trust = trust

    @property
    def trust(self) -> TrustPolicy:
        """The trust policy given, else the one ``TrustPolicy.load()`` finds (outside the store)."""
        if self._trust is None:
            self._trust = TrustPolicy.load()
        return self._trust

    def policy(self) -> TrustPolicy:
        """The trust policy extended along this store's valid key rotations and revocations."""
        return store_policy(self.store, self.trust)

    def warnings(self, version: ModelVersion) -> list[str]:
        """Why a verified ``version`` may still deserve doubt (its key lay inside a store)."""
        return exposure_warnings(self.store.root, self.trust, version.manifest.signer)

    def _check(
        self, signer: str, message: bytes, signature: str, *, what: str, at_seq: int
    ) -> None:
        """``TrustPolicy.check`` on the store's policy, naming the migration an old store needs."""
        try:
            self.policy().check(signer, message, signature, what=what, at_seq=at_seq)
        except UntrustedKeyError as exc:
            in_store = store_private_key(self.store.root)
            if in_store is None or not _same_key(in_store, signer):
                raise
            raise UntrustedKeyError(
                f"{what} refused: it was signed by key {key_id(signer)}, whose private half "
                f"lies inside the store ({in_store}), so anyone who can write the store can "
                f"sign as it; if this store was written only by you, move the key out and pin "
                f"it: mlwarden signing migrate --store {self.store.root}"
            ) from exc

    def versions(self, name: str | None = None) -> list[ModelVersion]:
        """Every readable version record, oldest first, optionally of one name (unchecked).

        Replayed or out-of-order records are included; ``history`` says which they are.
        """
        found: list[ModelVersion] = []
        for record in self.store.records("model_version", subject=name):
            try:
                found.append(version_of(record))
            except ValueError:
                continue
        return found

    def history(self, name: str) -> tuple[list[ModelVersion], list[Problem]]:
        """The valid versions of ``name`` (oldest first) and any replayed or misordered records."""
        return check_versions(self.store.records("model_version", subject=name))

    def get(self, ref: str) -> ModelVersion:
        """Resolve ``name``, ``name@latest``, ``name@N`` or ``name@STAGE`` to a version.

        Resolves only through a clean history: a replayed, out-of-order or unlinked version
        record of the name is refused (``IntegrityError``), whatever version is asked for.
        """
        match = _REF.match(ref)
        if match is None:
            raise RecordNotFoundError(
                f"model reference {ref!r} is malformed; expected NAME, NAME@latest, NAME@N "
                "or NAME@STAGE"
            )
        name, version = match["name"], match["version"] or "latest"
        found, problems = self.history(name)
        if problems:
            raise IntegrityError(f"{ref} refused: {problems[0].message}")
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

    def is_legacy_promotion(self, name: str, stage: str) -> bool:
        """Whether ``name@stage`` rests on a legacy promotion, not linked to the one before it."""
        records = self.store.records("model_stage", subject=name, key=stage, newest_first=True)
        return bool(records) and records[0].payload.get("format") != PROMOTION_FORMAT

    def _staged(self, name: str, stage: str, found: list[ModelVersion]) -> ModelVersion:
        """The version most recently promoted to ``stage`` (its signed promotion verified)."""
        records = self.store.records("model_stage", subject=name, key=stage)
        if not records:
            raise RecordNotFoundError(
                f"no version of {name} was promoted to {stage!r}; "
                f"mlwarden models promote {name}@N --stage {stage}"
            )
        problems = check_promotions(records)
        if problems:
            raise IntegrityError(f"{name}@{stage} refused: {problems[0].message}")
        payload = records[-1].payload
        self._check(
            str(payload.get("signer", "")),
            canonical_json(promotion_claim(payload)),
            str(payload.get("signature", "")),
            what=f"the promotion of {name} to {stage}",
            at_seq=records[-1].seq,
        )
        for candidate in found:
            if candidate.manifest.version == payload["version"]:
                linked = payload.get("manifest_sha256", candidate.manifest.sha256())
                if (
                    candidate.manifest.model_sha256 != payload["model_sha256"]
                    or linked != candidate.manifest.sha256()
                ):
                    raise SignatureError(
                        f"{name}@{stage} names a model that is not {candidate.ref}"
                    )
                return candidate
        raise RecordNotFoundError(f"{name}@{stage} names version {payload['version']}, not found")

    def promote(self, ref: str, stage: str, signer: Signer) -> ModelVersion:
        """Point ``name@stage`` at a verified version: a signed record, appended (never moved).

        The claim names the previous promotion to the same stage, so a copy of an older
        promotion appended later does not fit and is refused instead of moving the stage back.
        """
        if not _STAGE.match(stage) or stage == "latest":
            raise RecordNotFoundError(
                f"stage {stage!r} must be lowercase letters, digits, - or _, and not 'latest'"
            )
        version = self.get(ref)
        self.verify(version)
        name = version.manifest.name
        history = self.store.records("model_stage", subject=name, key=stage)
        problems = check_promotions(history)
        if problems:
            raise IntegrityError(f"{name}@{stage} refused: {problems[0].message}")
        with self.store.transaction() as tx:
            before = tx.latest("model_stage", name, key=stage)
            claim = {
                "format": PROMOTION_FORMAT,
                "name": name,
                "version": version.manifest.version,
                "stage": stage,
                "model_sha256": version.manifest.model_sha256,
                "manifest_sha256": version.manifest.sha256(),
                "previous": promotion_sha256(before.payload) if before else MANIFEST_GENESIS,
                "signer": signer.public_key_hex,
            }
            payload = {**claim, "signature": signer.sign(canonical_json(claim))}
            tx.append("model_stage", name, payload, key=stage)
        return version

    def verify(self, version: ModelVersion) -> None:
        """Check the signature, that the trust policy trusts the signer, the head and artifacts."""
        manifest = version.manifest
        self._check(
            manifest.signer,
            manifest.message(),
            version.signature,
            what=version.ref,
            at_seq=version.record_seq,
        )
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

    def _verified_model(
        self, ref: str, media_type: str, expected: str
    ) -> tuple[ModelVersion, bytes]:
        """Resolve ``ref``, refuse a model that is not ``media_type`` (``expected`` says what
        was expected), verify it: the version and its model's bytes."""
        version = self.get(ref)
        if version.manifest.model_media_type != media_type:
            raise ModelError(
                f"{version.ref} is a {version.manifest.model_media_type} model, not {expected}"
            )
        self.verify(version)
        return version, self.store.read_artifact(version.manifest.model_sha256)

    def load(self, ref: str, budget: int | None = None) -> tuple[ModelVersion, SklearnAdapter]:
        """Verify a registered version, then load its model (skops, trusted types only: those
        of trained models, the reviewed pickle allowlist, and an import's scan policy)."""
        version, data = self._verified_model(
            ref,
            MEDIA_TYPE,
            f"a scikit-learn one ({MEDIA_TYPE}); a language model is audited with --checks "
            "canary, an early-exit network with --checks slowdown",
        )
        # An imported model may hold any type the pickle allowlist admits, and those its scan
        # policy added, as its signed import record says (mlwarden import).
        record = version.manifest.artifacts.get("imported")
        extra = []
        if record is not None:
            extra = json.loads(self.store.read_artifact(record)).get("allow_globals", [])
        trusted = imported_trusted_types(extra)
        return version, SklearnAdapter(loads_model(data, trusted), budget=budget)

    def load_classifier(self, ref: str) -> tuple[ModelVersion, ModelAdapter]:
        """Verify a registered classifier of any kind that runs, then load it: scikit-learn
        (skops), ONNX, or a torch classifier saved with its architecture.

        A version that cannot answer rows of its table is refused (``CapabilityError``) with
        what it is and what would make it runnable. An ONNX or torch model reads a frame's
        columns in the order its import recorded (versions imported before that was recorded:
        in the frame's order).
        """
        version = self.get(ref)
        media_type = version.manifest.model_media_type
        if media_type == MEDIA_TYPE:
            return self.load(ref)
        if media_type in (ONNX_MEDIA_TYPE, TORCH_MEDIA_TYPE):
            self.verify(version)
            data = self.store.read_artifact(version.manifest.model_sha256)
            record = version.manifest.artifacts.get("imported")
            columns = None
            if record is not None:
                columns = json.loads(self.store.read_artifact(record)).get("columns")
            return version, adapter_for(data, media_type, columns)
        why = _NOT_RUNNABLE.get(media_type, "no adapter runs this media type")
        raise CapabilityError(f"{version.ref} is a {media_type} model: {why}")

    def load_early_exit(self, ref: str) -> tuple[ModelVersion, EarlyExitNetwork, dict[str, Any]]:
        """Verify a registered early-exit network, then load it and its threshold and split."""
        from mlwarden.models._sdn import load_sdn

        version, data = self._verified_model(
            ref, EARLY_EXIT_MEDIA_TYPE, f"an early-exit network ({EARLY_EXIT_MEDIA_TYPE})"
        )
        info = json.loads(self.store.read_artifact(version.manifest.artifacts["info"]))
        return version, load_sdn(data), info

    def load_language_model(self, ref: str) -> tuple[ModelVersion, CharLM]:
        """Verify a registered character language model, then load it (safetensors)."""
        from mlwarden.models._charlm import load_char_lm

        version, data = self._verified_model(
            ref,
            LANGUAGE_MODEL_MEDIA_TYPE,
            f"a character language model ({LANGUAGE_MODEL_MEDIA_TYPE})",
        )
        return version, load_char_lm(data)


def _same_key(private_path: Any, signer_hex: str) -> bool:
    """Whether the in-store private key file is the half of ``signer_hex`` (unreadable: False)."""
    try:
        return bool(Signer.from_file(private_path).public_key_hex == signer_hex)
    except SignatureError:
        return False
