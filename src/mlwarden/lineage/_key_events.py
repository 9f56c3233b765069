"""What a store does with keys: refuse an in-store private key, migrate it out, rotate, revoke.

The store keeps public keys only (``<store>/keys/<key id>.pub``, for information: never trusted).
Rotations and revocations are signed records of the store's chain.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from mlwarden.errors import SignatureError
from mlwarden.lineage._checkpoints import Checkpoint, write_checkpoint_file
from mlwarden.lineage._keys import (
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    Signer,
    TrustPolicy,
    default_key_dir,
    key_id,
    public_key_hex,
    revocation_claim,
    rotation_claim,
    signed_event,
)

if TYPE_CHECKING:
    from mlwarden.lineage._store import LineageStore

#: Folder of a store that holds public keys for information (and, in old stores, the private key).
STORE_KEYS = "keys"


def store_private_key(store_root: Path) -> Path | None:
    """The private key an old store still holds, if any."""
    path = store_root / STORE_KEYS / PRIVATE_KEY_FILE
    return path if path.exists() else None


def refuse_key_in_store(store_root: Path) -> None:
    """Raise if the store holds a private key: whoever can write the store could sign with it."""
    path = store_private_key(store_root)
    if path is not None:
        raise SignatureError(
            f"{path} is a private signing key inside the store, where anyone who can write the "
            f"store can sign with it; nothing is signed until it is moved out: "
            f"mlwarden signing migrate --store {store_root}"
        )


def signer_for_store(store_root: Path, key_dir: Path | None = None) -> Signer:
    """The signer to sign into this store with (refusing an in-store key); publishes its .pub."""
    refuse_key_in_store(store_root)
    signer = Signer.load_or_create(key_dir)
    publish_public_key(store_root, signer)
    return signer


def publish_public_key(store_root: Path, signer: Signer) -> None:
    """Copy the public key into ``<store>/keys/<key id>.pub``: for people to read, never trusted."""
    folder = store_root / STORE_KEYS
    path = folder / f"{signer.key_id}.pub"
    try:
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            path.write_bytes(signer.public_pem())
    except OSError:
        return  # informational only: a read-only store still verifies and signs


def store_policy(store: LineageStore, policy: TrustPolicy) -> TrustPolicy:
    """``policy`` extended along the store's valid rotation and revocation records."""
    records = store.records("key_rotated") + store.records("key_revoked")
    return policy.with_chain(records)


def exposure_warnings(store_root: Path, policy: TrustPolicy, signer_hex: str) -> list[str]:
    """Why a signature that verified may still not mean much: its key was inside a store."""
    found: list[str] = []
    in_store = store_private_key(store_root)
    if in_store is not None:
        found.append(
            f"{in_store}: this store still holds a private signing key, so anyone who could "
            f"write the store could sign with it; move it out: "
            f"mlwarden signing migrate --store {store_root}, then mlwarden signing rotate"
        )
    if policy.exposed(signer_hex):
        found.append(
            f"key {key_id(signer_hex)} lay inside a store before it was migrated: anyone who could "
            f"write that store could have signed with it; rotate it: "
            f"mlwarden signing rotate --store {store_root}"
        )
    return found


def migrate_store_key(store_root: Path, key_dir: Path | None = None) -> Signer:
    """Move an old store's private key into the key dir, pin its public key, delete the copy.

    When the key dir already has its own key, the store's key is kept there as
    ``<key id>.key`` (old signatures stay verifiable through the pin) and the key dir's key
    goes on signing.
    """
    path = store_private_key(store_root)
    if path is None:
        raise SignatureError(
            f"{store_root / STORE_KEYS / PRIVATE_KEY_FILE} does not exist: nothing to migrate"
        )
    old = Signer.from_file(path)
    folder = key_dir if key_dir is not None else default_key_dir()
    current = folder / PRIVATE_KEY_FILE
    if current.exists() and Signer.from_file(current).public_key_hex != old.public_key_hex:
        target = folder / f"{old.key_id}.key"
        if not target.exists():
            old.save(folder, name=target.name)
    elif not current.exists():
        old.save(folder)
    TrustPolicy.of_key_dir(folder).pin(
        old.public_key_hex, note=f"migrated out of the store {store_root}", exposed=True
    )
    publish_public_key(store_root, old)
    os.remove(path)
    old.source = str(current if current.exists() else folder / f"{old.key_id}.key")
    return old


def rotate_key(store: LineageStore, key_dir: Path | None = None) -> tuple[Signer, Signer]:
    """Replace the key dir's key by a new one; a ``key_rotated`` record signed by the old key.

    The new key is pinned in the key dir's trust policy; elsewhere, trust reaches it from the
    pinned old key through the record.
    """
    folder = key_dir if key_dir is not None else default_key_dir()
    current = folder / PRIVATE_KEY_FILE
    refuse_key_in_store(store.root)
    if not current.exists():
        raise SignatureError(
            f"no signing key at {current} to rotate (an environment key is rotated by "
            "generating a new one and pinning it where it is verified)"
        )
    old = Signer.from_file(current)
    new = Signer.generate()
    staged = new.save(folder, name=f"{new.key_id}.key.new")
    claim = rotation_claim(old.public_key_hex, new.public_key_hex)
    store.append("key_rotated", old.key_id, signed_event(claim, old), key=new.key_id)
    os.replace(staged, current)
    staged.with_suffix(".pub").replace(folder / PUBLIC_KEY_FILE)
    TrustPolicy.of_key_dir(folder).pin(new.public_key_hex, note=f"rotated from {old.key_id}")
    new.source = str(current)
    publish_public_key(store.root, new)
    return old, new


def known_key(store: LineageStore, policy: TrustPolicy, given: str) -> str:
    """The full public key hex that ``given`` (hex, a key id, or PEM text/file) names."""
    text = Path(given).read_text() if Path(given).is_file() else given
    if len(text.strip()) in (64,) or "BEGIN" in text:
        return public_key_hex(text)
    candidates = set(policy.pinned) | set(policy.revoked)
    for record in store.records("key_rotated") + store.records("key_revoked"):
        candidates.update(str(v) for k, v in record.payload.items() if k in ("key", "new_key"))
    for record in store.records("model_version"):
        manifest = record.payload.get("manifest")
        if isinstance(manifest, dict):
            candidates.add(str(manifest.get("signer", "")))
    matches = sorted(c for c in candidates if c and key_id(c) == given.strip().lower())
    if len(matches) != 1:
        raise SignatureError(
            f"no key with id {given!r} is pinned or named in the store; give its 64-hex public key"
        )
    return matches[0]


def revoke_key(
    store: LineageStore, public_hex: str, reason: str, signer: Signer, policy: TrustPolicy
) -> None:
    """Record a revocation in the chain (signed by ``signer``) and in the trust policy file."""
    if public_hex == signer.public_key_hex:
        raise SignatureError(
            f"key {signer.key_id} is the key that signs now; rotate first "
            f"(mlwarden signing rotate --store {store.root}), then revoke the old one"
        )
    claim = revocation_claim(public_hex, reason)
    store.append("key_revoked", key_id(public_hex), signed_event(claim, signer))
    policy.revoke(public_hex, reason)


#: Folder of the key dir where this machine keeps the newest checkpoint it signed per store.
LOCAL_WITNESSES = "witnesses"


def local_witness_path(store: LineageStore, key_dir: Path | None = None) -> Path:
    """Where this machine keeps its own witness of ``store``: in the key dir, outside the store.

    Named after where the store lives (folder and database URL), not after anything the store
    says about itself, so a chain rewritten from its first record still meets this witness.
    """
    where = f"{store.root.resolve()}|{store.url}"
    name = hashlib.sha256(where.encode()).hexdigest()[:16]
    return (
        (key_dir if key_dir is not None else default_key_dir()) / LOCAL_WITNESSES / f"{name}.json"
    )


def remember_checkpoint(
    store: LineageStore, checkpoint: Checkpoint, signer: Signer, key_dir: Path | None = None
) -> Path | None:
    """Keep ``checkpoint`` as this machine's witness of ``store``, if ``signer`` is the key dir's.

    A key given by the environment (CI) writes nothing to the key dir: export a witness there.
    Returns the witness path, or None when nothing was kept.
    """
    if signer.source.startswith("$") or signer.source == "memory":
        return None
    path = local_witness_path(store, key_dir)
    write_checkpoint_file(path, [checkpoint])
    return path
