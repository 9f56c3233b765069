"""Signing keys outside the store, the trust policy of pinned keys, rotation and revocation."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from mlwarden.errors import SignatureError, UntrustedKeyError
from mlwarden.lineage import (
    LineageStore,
    Signer,
    TrustPolicy,
    default_key_dir,
    key_id,
    migrate_store_key,
    revoke_key,
    rotate_key,
    signer_for_store,
    store_policy,
)

MESSAGE = b"a manifest"


@pytest.fixture
def key_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh key dir of this test only (the default key dir points at it)."""
    folder = tmp_path / "keys"
    monkeypatch.setenv("MLWARDEN_KEY_DIR", str(folder))
    return folder


def test_the_default_key_dir_is_the_env_else_the_user_config_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLWARDEN_KEY_DIR", str(tmp_path / "k"))
    assert default_key_dir() == tmp_path / "k"
    monkeypatch.delenv("MLWARDEN_KEY_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert default_key_dir() == tmp_path / "cfg" / "mlwarden" / "keys"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_key_dir() == tmp_path / "home" / ".config" / "mlwarden" / "keys"


def test_a_created_key_is_private_to_its_owner_and_pinned_where_it_lives(key_dir: Path) -> None:
    signer = Signer.load_or_create()
    assert signer.created_in == key_dir
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((key_dir / "signing.key").stat().st_mode) == 0o600
    raw = bytes.fromhex(signer.public_key_hex)
    assert len(raw) == 32
    assert signer.key_id == hashlib.sha256(raw).hexdigest()[:16] == key_id(signer.public_key_hex)
    policy = TrustPolicy.load()
    assert policy.path == key_dir / "trust.json"
    assert list(policy.pinned) == [signer.public_key_hex]
    policy.check(signer.public_key_hex, MESSAGE, signer.sign(MESSAGE), what="m")
    again = Signer.load_or_create()  # loaded, not created: nothing more pinned
    assert again.public_key_hex == signer.public_key_hex
    assert again.created_in is None
    assert len(TrustPolicy.load().data.pinned) == 1


def test_a_key_given_by_the_environment_wins_and_writes_nothing(
    key_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ci = Signer.generate()
    monkeypatch.setenv("MLWARDEN_SIGNING_KEY", ci.private_pem().decode())
    assert Signer.load_or_create().public_key_hex == ci.public_key_hex
    monkeypatch.delenv("MLWARDEN_SIGNING_KEY")
    path = tmp_path / "ci.pem"
    path.write_bytes(ci.private_pem())
    monkeypatch.setenv("MLWARDEN_SIGNING_KEY_FILE", str(path))
    store = tmp_path / "store"
    assert signer_for_store(store).public_key_hex == ci.public_key_hex
    assert not key_dir.exists()  # nothing created, nothing pinned
    assert [p.name for p in (store / "keys").iterdir()] == [f"{ci.key_id}.pub"]


def test_a_corrupt_environment_key_is_a_clean_signature_error(
    key_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLWARDEN_SIGNING_KEY", "-----BEGIN PRIVATE KEY-----\nnope\n")
    with pytest.raises(SignatureError, match=r"\$MLWARDEN_SIGNING_KEY is not a readable PEM"):
        Signer.load_or_create()


def test_the_policy_refuses_what_it_does_not_pin_and_says_how_to_pin(key_dir: Path) -> None:
    mine, theirs = Signer.load_or_create(), Signer.generate()
    policy = TrustPolicy.load()
    with pytest.raises(UntrustedKeyError) as caught:
        policy.check(theirs.public_key_hex, MESSAGE, theirs.sign(MESSAGE), what="model x@1")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("model x@1 refused: key " + theirs.key_id)
    assert str(policy.path) in message
    assert f"mlwarden signing trust {theirs.public_key_hex}" in message
    # A pinned key's signature over other bytes, or a signature by another key, fails too.
    with pytest.raises(SignatureError, match="signature does not verify"):
        policy.check(mine.public_key_hex, b"other", mine.sign(MESSAGE), what="m")
    with pytest.raises(SignatureError, match="signature does not verify"):
        policy.check(mine.public_key_hex, MESSAGE, theirs.sign(MESSAGE), what="m")
    with pytest.raises(SignatureError, match="signature does not verify"):
        policy.check(mine.public_key_hex, MESSAGE, "zz", what="m")


def test_a_key_revoked_in_the_policy_is_refused_everywhere(key_dir: Path) -> None:
    signer = Signer.load_or_create()
    policy = TrustPolicy.load()
    policy.revoke(signer.public_key_hex, "laptop stolen")
    reloaded = TrustPolicy.load()
    for seq in (None, 1, 10**9):
        with pytest.raises(UntrustedKeyError, match=r"revoked by the trust policy .*laptop stolen"):
            reloaded.check(
                signer.public_key_hex, MESSAGE, signer.sign(MESSAGE), what="m", at_seq=seq
            )


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"format": 2, "pinned": []}',
        '{"format": 1, "pinned": [{"public_key": "zz", "added_at": "2026-01-01T00:00:00Z"}]}',
        '{"format": 1, "surprise": true}',
        "\udcff".encode("utf-8", "surrogateescape").decode("latin-1"),
    ],
)
def test_a_corrupt_trust_policy_is_one_signature_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "trust.json"
    path.write_text(content, encoding="latin-1")
    with pytest.raises(SignatureError) as caught:
        TrustPolicy.load(path)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"trust policy {path} is corrupt")


def test_a_named_trust_policy_that_does_not_exist_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLWARDEN_TRUST", str(tmp_path / "missing.json"))
    with pytest.raises(SignatureError, match=r"missing\.json does not exist"):
        TrustPolicy.load()
    with pytest.raises(SignatureError, match=r"other\.json does not exist"):
        TrustPolicy.load(tmp_path / "other.json")


def test_the_env_trust_policy_replaces_the_key_dirs(
    key_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = Signer.load_or_create()  # pinned in the key dir's trust.json
    outside = TrustPolicy(tmp_path / "team.json")
    outside.pin(Signer.generate().public_key_hex)
    monkeypatch.setenv("MLWARDEN_TRUST", str(outside.path))
    with pytest.raises(UntrustedKeyError, match=r"team\.json"):
        TrustPolicy.load().check(signer.public_key_hex, MESSAGE, signer.sign(MESSAGE), what="m")


# -- rotation and revocation records in a store's chain ----------------------------------------


def test_trust_follows_a_valid_rotation_from_a_pinned_key(
    key_dir: Path, store: LineageStore, tmp_path: Path
) -> None:
    old = Signer.load_or_create()
    verifier = TrustPolicy(tmp_path / "verifier.json")  # someone who pinned only the old key
    verifier.pin(old.public_key_hex)
    before = store.append("run_started", "r", {})
    rotated_old, new = rotate_key(store)
    assert rotated_old.public_key_hex == old.public_key_hex
    assert Signer.load_or_create().public_key_hex == new.public_key_hex  # the key dir moved on
    after = store.append("run_started", "r2", {})
    policy = store_policy(store, verifier)
    assert policy.problems == []
    assert [e.kind for e in policy.events] == ["key_rotated"]
    policy.check(new.public_key_hex, MESSAGE, new.sign(MESSAGE), what="m", at_seq=after.seq)
    policy.check(old.public_key_hex, MESSAGE, old.sign(MESSAGE), what="m", at_seq=before.seq)
    with pytest.raises(UntrustedKeyError, match="rotated away by record"):
        policy.check(old.public_key_hex, MESSAGE, old.sign(MESSAGE), what="m", at_seq=after.seq)
    # Without the store's record the verifier does not trust the new key.
    with pytest.raises(UntrustedKeyError, match="not pinned"):
        verifier.check(new.public_key_hex, MESSAGE, new.sign(MESSAGE), what="m")


def test_a_forged_rotation_signed_by_an_unpinned_key_trusts_nothing(
    key_dir: Path, store: LineageStore
) -> None:
    from mlwarden.lineage._keys import rotation_claim, signed_event

    pinned = Signer.load_or_create()
    attacker, attackers_next = Signer.generate(), Signer.generate()
    claim = rotation_claim(attacker.public_key_hex, attackers_next.public_key_hex)
    store.append("key_rotated", attacker.key_id, signed_event(claim, attacker))
    # ... and a rotation claiming to come from the pinned key, signed by the attacker.
    claim = rotation_claim(pinned.public_key_hex, attackers_next.public_key_hex)
    forged = {**signed_event(claim, attacker), "signer": pinned.public_key_hex}
    store.append("key_rotated", pinned.key_id, forged)
    policy = store_policy(store, TrustPolicy.load())
    assert len(policy.problems) == 2
    assert "not pinned" in policy.problems[0]
    assert "does not verify" in policy.problems[1]
    with pytest.raises(UntrustedKeyError, match="not pinned"):
        policy.check(attackers_next.public_key_hex, MESSAGE, attackers_next.sign(MESSAGE), what="m")
    end = store.append("run_started", "r", {}).seq
    policy.check(pinned.public_key_hex, MESSAGE, pinned.sign(MESSAGE), what="m", at_seq=end)


def test_a_revocation_refuses_signatures_made_after_it_only(
    key_dir: Path, store: LineageStore, tmp_path: Path
) -> None:
    signer = Signer.load_or_create()
    ci = Signer.generate()
    policy = TrustPolicy.load()
    policy.pin(ci.public_key_hex, note="CI")
    before = store.append("run_started", "r", {}).seq
    with pytest.raises(SignatureError, match="rotate first"):
        revoke_key(store, signer.public_key_hex, "mine", signer, policy)
    # A verifier elsewhere, whose own policy file does not revoke the key: the record does.
    elsewhere = TrustPolicy(tmp_path / "elsewhere.json")
    elsewhere.pin(signer.public_key_hex)
    elsewhere.pin(ci.public_key_hex)
    revoke_key(store, ci.public_key_hex, "CI runner compromised", signer, policy)
    after = store.append("run_started", "r2", {}).seq
    chained = store_policy(store, elsewhere)
    assert [(e.kind, e.reason) for e in chained.events] == [
        ("key_revoked", "CI runner compromised")
    ]
    chained.check(ci.public_key_hex, MESSAGE, ci.sign(MESSAGE), what="m", at_seq=before)
    with pytest.raises(UntrustedKeyError, match="revoked by record"):
        chained.check(ci.public_key_hex, MESSAGE, ci.sign(MESSAGE), what="m", at_seq=after)
    # The policy file that revoked it refuses it everywhere, even before the record.
    with pytest.raises(UntrustedKeyError, match="revoked by the trust policy"):
        TrustPolicy.load().check(
            ci.public_key_hex, MESSAGE, ci.sign(MESSAGE), what="m", at_seq=before
        )


# -- an old store that holds its private key ---------------------------------------------------


def _old_store(root: Path) -> Signer:
    """A store laid out the old way: the private key in ``<store>/keys/signing.key``."""
    old = Signer.generate()
    (root / "keys").mkdir(parents=True)
    (root / "keys" / "signing.key").write_bytes(old.private_pem())
    (root / "keys" / "signing.pub").write_bytes(old.public_pem())
    return old


def test_an_in_store_private_key_is_never_used_to_sign(key_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "store"
    _old_store(root)
    with pytest.raises(SignatureError) as caught:
        signer_for_store(root)
    message = str(caught.value)
    assert "\n" not in message
    assert str(root / "keys" / "signing.key") in message
    assert f"mlwarden signing migrate --store {root}" in message
    assert not key_dir.exists()


def test_migrate_moves_the_key_out_pins_it_and_marks_it_exposed(
    key_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    old = _old_store(root)
    moved = migrate_store_key(root)
    assert moved.public_key_hex == old.public_key_hex
    assert not (root / "keys" / "signing.key").exists()
    assert not any(p.suffix == ".key" for p in root.rglob("*"))
    assert stat.S_IMODE((key_dir / "signing.key").stat().st_mode) == 0o600
    policy = TrustPolicy.load()
    assert policy.exposed(old.public_key_hex)
    assert signer_for_store(root).public_key_hex == old.public_key_hex
    with pytest.raises(SignatureError, match="nothing to migrate"):
        migrate_store_key(root)


def test_migrate_keeps_an_existing_key_dir_key_signing(key_dir: Path, tmp_path: Path) -> None:
    mine = Signer.load_or_create()
    root = tmp_path / "store"
    old = _old_store(root)
    migrate_store_key(root)
    assert Signer.load_or_create().public_key_hex == mine.public_key_hex
    assert (key_dir / f"{old.key_id}.key").exists()
    assert set(TrustPolicy.load().pinned) == {mine.public_key_hex, old.public_key_hex}


def test_the_trust_file_is_versioned_json(key_dir: Path) -> None:
    Signer.load_or_create()
    data = json.loads((key_dir / "trust.json").read_text())
    assert data["format"] == 1
    assert [sorted(k) for k in data["pinned"]] == [["added_at", "exposed", "note", "public_key"]]
    assert os.stat(key_dir / "trust.json").st_size > 0
