"""Registering a model version: number it, link it to the version before, sign its manifest.

The write side of the registry (``ModelRegistry`` reads and verifies). A version is built inside
the transaction that appends it, so no other writer can take its number or its predecessor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mlwarden.errors import IntegrityError
from mlwarden.lineage import Appender, Signer
from mlwarden.models._manifest import MANIFEST_GENESIS, Manifest, version_of
from mlwarden.models._provenance import Registration, attach_provenance

#: The held-out scores a manifest carries (a model without them, such as a language model,
#: carries none).
HEADLINE_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")


def next_manifest_link(tx: Appender, name: str) -> tuple[int, str]:
    """The version number and previous-manifest hash a new version of ``name`` must carry.

    Read inside the registering transaction, so no other writer can slip a version in between;
    a history whose newest record is not the newest version (a replay) is refused.
    """
    count = tx.count("model_version", name)
    latest = tx.latest("model_version", name)
    if latest is None:
        return 1, MANIFEST_GENESIS
    try:
        previous = version_of(latest)
    except ValueError as exc:
        raise IntegrityError(
            f"{name}: the newest model_version record {latest.seq} is unreadable ({exc}); "
            "run mlwarden lineage verify"
        ) from exc
    if previous.manifest.version != count:
        raise IntegrityError(
            f"{name}: the newest record {latest.seq} is {previous.ref} but {count} versions are "
            "recorded: replayed or out-of-order versions; run mlwarden lineage verify"
        )
    return count + 1, previous.manifest.sha256()


def version_record(
    tx: Appender,
    signer: Signer,
    *,
    name: str,
    model_sha256: str,
    media_type: str,
    artifacts: dict[str, str],
    metrics: dict[str, Any],
    gate: dict[str, Any],
    spec_sha256: str,
    run_id: str,
    created_at: datetime,
) -> tuple[str, str, dict[str, Any]]:
    """The next version of ``name``: its signed manifest as a ``model_version`` record to append
    in ``tx`` (kind, subject, payload), naming ``tx``'s head as its lineage.

    Its provenance (an in-toto SLSA statement and an OpenSSF model-signing signature, see
    ``_provenance``) is stored in ``tx`` and listed among the manifest's artifacts; the record's
    ``provenance`` says which key signed it, or why there is none.
    """
    version, previous = next_manifest_link(tx, name)
    facts = Registration(name, version, model_sha256, artifacts, spec_sha256, run_id, created_at)
    signed, note = attach_provenance(tx, signer, facts)
    manifest = Manifest(
        name=name,
        version=version,
        previous_manifest_sha256=previous,
        model_sha256=model_sha256,
        model_media_type=media_type,
        artifacts={**artifacts, **signed},
        metrics={k: metrics[k] for k in HEADLINE_METRICS if k in metrics},
        gate=gate,
        lineage_head=tx.head,
        spec_sha256=spec_sha256,
        run_id=run_id,
        signer=signer.public_key_hex,
        created_at=created_at,
    )
    signature = signer.sign(manifest.message())
    return (
        "model_version",
        name,
        {"manifest": manifest.model_dump(mode="json"), "signature": signature, "provenance": note},
    )
