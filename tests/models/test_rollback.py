"""Rollback and replay: copies of older signed records must not move ``@latest`` or a stage back.

An attacker with write access to the store (no key needed) appends a copy of an older signed
``model_version`` or ``model_stage`` record through the store's own append API. Each version
and each promotion names its predecessor, so the copy no longer fits and is refused.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlwarden.cli import main
from mlwarden.errors import IntegrityError, SignatureError
from mlwarden.lineage import LineageStore, canonical_json, verify_store
from mlwarden.models import (
    MANIFEST_GENESIS,
    Manifest,
    ModelRegistry,
    Signer,
    model_history_problems,
    next_manifest_link,
)
from mlwarden.pipeline import LocalExecutor, PipelineSpec, parse_spec
from tests.conftest import FAST_SPEC


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with german@1 and german@2 (the default pipeline), promoted 1 then 2."""
    root = tmp_path_factory.mktemp("rollback") / "store"
    store = LineageStore(root)
    spec = parse_spec(FAST_SPEC)
    LocalExecutor(store).run(spec)
    LocalExecutor(store).run(_other_grid(spec))
    registry = ModelRegistry(store)
    signer = Signer.load_or_create()
    registry.promote("german@1", "production", signer)
    registry.promote("german@2", "production", signer)
    store.close()
    return root


def _other_grid(spec: PipelineSpec) -> PipelineSpec:
    return spec.model_copy(update={"train": spec.train.model_copy(update={"grid": {"C": [0.5]}})})


@pytest.fixture
def attacked(two_versions: Path, tmp_path: Path) -> Iterator[LineageStore]:
    """A fresh copy of the two-version store, for one attack."""
    root = tmp_path / "store"
    shutil.copytree(two_versions, root)
    store = LineageStore(root)
    yield store
    store.close()


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


def _signed(registry: ModelRegistry, manifest: Manifest) -> dict[str, Any]:
    signer = Signer.load_or_create()
    return {
        "manifest": manifest.model_dump(mode="json"),
        "signature": signer.sign(manifest.message()),
    }


def test_each_version_is_bound_to_the_manifest_before_it(attacked: LineageStore) -> None:
    registry = ModelRegistry(attacked)
    v1, v2 = registry.get("german@1"), registry.get("german@2")
    assert v1.manifest.previous_manifest_sha256 == MANIFEST_GENESIS
    assert v2.manifest.previous_manifest_sha256 == v1.manifest.sha256()
    assert b"previous_manifest_sha256" in v2.manifest.message()  # covered by the signature
    forged = v2.manifest.model_copy(update={"previous_manifest_sha256": "ab" * 32})
    tampered = v2.model_copy(update={"manifest": forged})
    with pytest.raises(SignatureError, match="signature does not verify"):
        registry.verify(tampered)


def test_a_replayed_version_record_is_refused_everywhere(
    attacked: LineageStore, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = ModelRegistry(attacked)
    old = attacked.records("model_version", subject="german")[0]
    replay = attacked.append("model_version", "german", old.payload)
    assert verify_store(attacked).ok  # the hash chain alone sees a well-formed append
    for ref in ("german@latest", "german@2", "german@production"):
        with pytest.raises(IntegrityError, match=f"record {replay.seq} repeats german@1"):
            registry.get(ref)
    store = str(attacked.root)
    code, text = _cli(capsys, "lineage", "verify", "--store", store)
    assert code == 4
    assert f"model_version record {replay.seq} repeats german@1" in text
    assert "a replayed version" in text
    code, text = _cli(capsys, "models", "show", "german@latest", "--store", store)
    assert code == 4
    assert text.startswith("error: german@latest refused:")
    assert "verified" not in text
    code, text = _cli(capsys, "models", "list", "--store", store)
    assert code == 4
    assert text.count("TAMPERED") == 1
    assert f"tampered: model_version record {replay.seq} repeats german@1" in text
    code, _ = _cli(capsys, "models", "promote", "german@2", "--stage", "staging", "--store", store)
    assert code == 4


def test_a_new_version_is_not_registered_on_top_of_a_replay(attacked: LineageStore) -> None:
    old = attacked.records("model_version", subject="german")[0]
    attacked.append("model_version", "german", old.payload)
    with (
        pytest.raises(IntegrityError, match="german@1 but 3 versions are recorded"),
        attacked.transaction() as tx,
    ):
        next_manifest_link(tx, "german")


def test_out_of_order_and_unlinked_versions_are_tampering(attacked: LineageStore) -> None:
    """Even a holder of the key cannot reuse a number or skip the link without verify noticing."""
    registry = ModelRegistry(attacked)
    v1, v2 = registry.get("german@1").manifest, registry.get("german@2").manifest
    back = v1.model_copy(update={"previous_manifest_sha256": v2.sha256()})
    record = attacked.append("model_version", "german", _signed(registry, back))
    first = registry.versions()[0].record_seq
    assert [p.message for p in model_history_problems(attacked)] == [
        f"model_version record {record.seq} repeats german@1 first registered at record "
        f"{first}: a replayed version"
    ]


def test_a_version_that_names_the_wrong_predecessor_is_a_broken_link(
    attacked: LineageStore,
) -> None:
    registry = ModelRegistry(attacked)
    v1, v2 = registry.get("german@1").manifest, registry.get("german@2").manifest
    skipping = v2.model_copy(update={"version": 3, "previous_manifest_sha256": v1.sha256()})
    record = attacked.append("model_version", "german", _signed(registry, skipping))
    messages = [p.message for p in model_history_problems(attacked)]
    assert messages == [
        f"model_version record {record.seq} (german@3) names previous manifest "
        f"{v1.sha256()[:12]}, but the version before it is german@2: "
        "a broken previous-manifest link"
    ]


def test_a_version_below_the_newest_is_out_of_order(attacked: LineageStore) -> None:
    registry = ModelRegistry(attacked)
    v2 = registry.get("german@2").manifest
    # Version 0 is malformed; a fresh number below the newest needs a third version first.
    v3 = v2.model_copy(update={"version": 3, "previous_manifest_sha256": v2.sha256()})
    attacked.append("model_version", "german", _signed(registry, v3))
    assert registry.get("german@latest").ref == "german@3"
    older = v2.model_copy(update={"version": 2, "previous_manifest_sha256": v3.sha256()})
    record = attacked.append("model_version", "german", _signed(registry, older))
    messages = [p.message for p in model_history_problems(attacked)]
    assert any(
        m.startswith(f"model_version record {record.seq} repeats german@2") for m in messages
    )
    gapped = v2.model_copy(update={"version": 5, "previous_manifest_sha256": v3.sha256()})
    attacked.append("model_version", "german", _signed(registry, gapped))
    fine_after_gap = [m for m in model_history_problems(attacked) if "german@5" in m.message]
    assert fine_after_gap == []  # strictly increasing and linked: a skipped number is allowed


def test_a_replayed_promotion_does_not_move_the_stage_back(
    attacked: LineageStore, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = ModelRegistry(attacked)
    assert registry.get("german@production").ref == "german@2"
    first = attacked.records("model_stage", subject="german", key="production")[0]
    replay = attacked.append("model_stage", "german", first.payload, key="production")
    with pytest.raises(IntegrityError, match=f"record {replay.seq}\\) repeats the promotion"):
        registry.get("german@production")
    assert registry.get("german@latest").ref == "german@2"  # versions themselves are clean
    code, text = _cli(capsys, "lineage", "verify", "--store", str(attacked.root))
    assert code == 4
    assert "a replayed promotion" in text
    with pytest.raises(IntegrityError, match="replayed promotion"):
        registry.promote("german@2", "production", Signer.load_or_create())


def test_a_promotion_copied_to_another_stage_is_refused(attacked: LineageStore) -> None:
    registry = ModelRegistry(attacked)
    promoted = attacked.records("model_stage", subject="german", key="production")[-1]
    attacked.append("model_stage", "german", promoted.payload, key="canary")
    with pytest.raises(IntegrityError, match="claims german@production: filed under another"):
        registry.get("german@canary")


def test_promotions_link_and_a_stage_can_move_back_on_purpose(attacked: LineageStore) -> None:
    registry = ModelRegistry(attacked)
    registry.promote("german@1", "production", Signer.load_or_create())
    assert registry.get("german@production").ref == "german@1"
    assert model_history_problems(attacked) == []
    records = attacked.records("model_stage", subject="german", key="production")
    assert records[0].payload["previous"] == MANIFEST_GENESIS
    assert len({r.payload["signature"] for r in records}) == 3  # 1, 2, then 1 again: distinct


def _legacy(manifest: Manifest) -> Manifest:
    data = manifest.model_dump(mode="json")
    data.pop("previous_manifest_sha256")
    return Manifest.model_validate({**data, "format": 1, "name": "old", "version": 1})


def test_a_legacy_manifest_loads_is_flagged_and_anchors_the_next_version(
    attacked: LineageStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """A format 1 manifest, as stores written before this check hold, verifies as it was signed."""
    registry = ModelRegistry(attacked)
    legacy = _legacy(registry.get("german@1").manifest)
    assert b"previous_manifest_sha256" not in legacy.message()  # the bytes old code signed
    attacked.append("model_version", "old", _signed(registry, legacy))
    version = registry.get("old@latest")
    registry.verify(version)
    assert version.manifest.legacy
    assert model_history_problems(attacked) == []
    code, text = _cli(capsys, "models", "show", "old@1", "--store", str(attacked.root))
    assert code == 0
    assert "legacy manifest (format 1)" in text
    with attacked.transaction() as tx:
        assert next_manifest_link(tx, "old") == (2, legacy.sha256())
    linked = legacy.model_copy(
        update={"format": 2, "version": 2, "previous_manifest_sha256": legacy.sha256()}
    )
    attacked.append("model_version", "old", _signed(registry, linked))
    assert registry.get("old@latest").ref == "old@2"
    replay = attacked.append("model_version", "old", _signed(registry, legacy))
    with pytest.raises(IntegrityError, match=f"record {replay.seq} repeats old@1"):
        registry.get("old@latest")


def test_a_legacy_promotion_resolves_is_flagged_and_cannot_follow_a_linked_one(
    attacked: LineageStore, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = ModelRegistry(attacked)
    signer = Signer.load_or_create()
    v1 = registry.get("german@1").manifest
    claim = {
        "name": "german", "version": 1, "stage": "staging",
        "model_sha256": v1.model_sha256, "signer": signer.public_key_hex,
    }  # fmt: skip
    legacy = {**claim, "signature": signer.sign(canonical_json(claim))}
    attacked.append("model_stage", "german", legacy, key="staging")
    assert registry.get("german@staging").ref == "german@1"
    code, text = _cli(capsys, "models", "show", "german@staging", "--store", str(attacked.root))
    assert code == 0
    assert "legacy promotion" in text
    registry.promote("german@2", "staging", signer)
    assert registry.get("german@staging").ref == "german@2"
    attacked.append("model_stage", "german", legacy, key="staging")
    with pytest.raises(IntegrityError, match="legacy \\(unlinked\\) promotion after a linked"):
        registry.get("german@staging")


def test_an_unreadable_manifest_is_reported_not_raised(attacked: LineageStore) -> None:
    attacked.append("model_version", "german", {"manifest": {"format": 9}, "signature": "00"})
    (problem,) = model_history_problems(attacked)
    assert "is unreadable" in problem.message
    with pytest.raises(IntegrityError, match="is unreadable"):
        ModelRegistry(attacked).get("german@1")


PG_URL = os.environ.get("MLWARDEN_TEST_POSTGRES_URL")


@pytest.mark.skipif(PG_URL is None, reason="MLWARDEN_TEST_POSTGRES_URL is not set")
def test_replays_are_refused_on_postgres(tmp_path: Path) -> None:
    """The same attack on the team default: records in PostgreSQL, appended through the API."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    assert PG_URL is not None
    name = f"mlwarden_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    store = LineageStore(tmp_path, url=make_url(PG_URL).set(database=name).render_as_string(False))
    try:
        spec = parse_spec(FAST_SPEC)
        LocalExecutor(store).run(spec)
        LocalExecutor(store).run(_other_grid(spec))
        registry = ModelRegistry(store)
        signer = Signer.load_or_create()
        registry.promote("german@1", "production", signer)
        registry.promote("german@2", "production", signer)
        assert model_history_problems(store) == []
        stage = store.records("model_stage", subject="german")[0]
        store.append("model_stage", "german", stage.payload, key="production")
        with pytest.raises(IntegrityError, match="a replayed promotion"):
            registry.get("german@production")
        old = store.records("model_version", subject="german")[0]
        replay = store.append("model_version", "german", old.payload)
        with pytest.raises(IntegrityError, match=f"record {replay.seq} repeats german@1"):
            registry.get("german@latest")
        assert len(model_history_problems(store)) == 2
    finally:
        store.close()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()
