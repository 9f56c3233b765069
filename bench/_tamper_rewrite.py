"""The full-rewrite attack: swap the registered model and rebuild every record around it.

The attacker replaces the model artifact with a constant classifier, points every record at
it, re-signs every signed payload (model manifests, promotions, checkpoints: whatever carries a
``signature``) with the key it holds, recomputes every record hash in chain order, and rewrites
``HEAD`` and the ``CHECKPOINT`` file. Without the real key it signs with a key of its own and
puts that key's public half wherever the store keeps keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _tamper_store import (
    canonical,
    files_under,
    make_writable,
    open_db,
    record_hash,
    rewrite_head,
    rows,
    sha256,
)
from _tamper_store import insert as insert_row
from _tamper_store import last as last_record
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def constant_model(model_bytes: bytes, positive: bool) -> bytes:
    """The registered scikit-learn model with its weights zeroed: the same score for every row."""
    import numpy as np

    from mlwarden.models import dumps_model, loads_model

    model = loads_model(model_bytes)
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    if not hasattr(final, "coef_"):
        raise SystemExit(f"the bench's constant model needs a linear model, not {final!r}")
    final.coef_ = np.zeros_like(final.coef_)
    final.intercept_ = np.full_like(final.intercept_, 3.0 if positive else -3.0)
    return dumps_model(model)


def private_pem(key: Ed25519PrivateKey) -> bytes:
    """PKCS8 PEM of a private key, unencrypted, as mlwarden writes it."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: Ed25519PrivateKey) -> bytes:
    """SubjectPublicKeyInfo PEM of the key's public half."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def find_private_key(folders: list[Path]) -> Ed25519PrivateKey | None:
    """The first ed25519 private key (PEM) in any file under ``folders``."""
    for folder in folders:
        for path in files_under(folder):
            data = path.read_bytes()
            if b"PRIVATE KEY" not in data:
                continue
            try:
                key = serialization.load_pem_private_key(data, password=None)
            except (ValueError, TypeError):
                continue
            if isinstance(key, Ed25519PrivateKey):
                return key
    return None


def _public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes_raw().hex()


def _key_id(public_hex: str) -> str:
    return sha256(bytes.fromhex(public_hex))[:16]


def _substitute(text: str, subs: dict[str, str]) -> str:
    for old, new in subs.items():
        if old in text:
            text = text.replace(old, new)
    return text


def _resign(kind: str, payload: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """The payload with its signature remade by ``key`` over what mlwarden signs."""
    from mlwarden.models import Manifest

    if kind == "model_version" and "manifest" in payload:
        message = Manifest.model_validate(payload["manifest"]).message()
    else:
        message = canonical({k: v for k, v in payload.items() if k != "signature"})
    return {**payload, "signature": key.sign(message).hex()}


def rewrite_store(
    store: Path,
    key: Ed25519PrivateKey,
    *,
    old_model_sha: str,
    new_model: bytes,
    replace_keys: bool,
    url: str | None = None,
) -> None:
    """Swap the model ``old_model_sha`` for ``new_model`` and rebuild the chain with ``key``."""
    from mlwarden.models import Manifest

    new_sha = sha256(new_model)
    target = store / "artifacts" / new_sha[:2] / new_sha[2:]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(new_model)
    subs = {old_model_sha: new_sha}
    with open_db(store, url) as db:
        old_rows = rows(db)
        for row in old_rows:  # every signer named in a payload becomes the attacker's key
            payload = json.loads(row["payload"])
            signer = (payload.get("manifest") or {}).get("signer") or payload.get("signer")
            if isinstance(signer, str) and signer != _public_hex(key):
                subs.setdefault(signer, _public_hex(key))
                subs.setdefault(_key_id(signer), _key_id(_public_hex(key)))
        db.execute("DELETE FROM records")
        prev = "0" * 64
        for row in old_rows:
            new = {**row}
            for column in ("subject", "key"):
                if new[column] is not None:
                    new[column] = _substitute(new[column], subs)
            payload = json.loads(_substitute(row["payload"], subs))
            if row["kind"] == "artifact" and new["subject"] == new_sha:
                payload["size"] = len(new_model)
            if isinstance(payload.get("signature"), str):
                old_payload = json.loads(row["payload"])
                payload = _resign(row["kind"], payload, key)
                subs[old_payload["signature"]] = payload["signature"]
                if row["kind"] == "model_version":
                    before = Manifest.model_validate(old_payload["manifest"]).sha256()
                    subs[before] = Manifest.model_validate(payload["manifest"]).sha256()
            new["payload"] = canonical(payload).decode("utf-8")
            new["prev_hash"] = prev
            new["hash"] = record_hash(new)
            subs[row["hash"]] = new["hash"]
            insert_row(db, new)
            prev = new["hash"]
        seq, digest = last_record(db)
    rewrite_head(store, seq, digest)
    _rewrite_checkpoint(store, subs, key)
    if replace_keys:
        _plant_keys(store, key)


def _rewrite_checkpoint(store: Path, subs: dict[str, str], key: Ed25519PrivateKey) -> None:
    """Point a CHECKPOINT file at the rewritten chain and re-sign it, if the store has one.

    Every object in it that carries a ``signature`` is re-signed; the file keeps its own key
    order, spacing style and final newline, so only what the attacker changed differs.
    """
    path = store / "CHECKPOINT"
    if not path.exists():
        return
    original = path.read_text("utf-8")
    try:
        data = json.loads(_substitute(original, subs))
    except ValueError:
        return
    data = _resign_all(data, key)
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if original.endswith("\n"):
        text += "\n"
    make_writable(path)
    path.write_text(text, "utf-8")


def _resign_all(value: Any, key: Ed25519PrivateKey) -> Any:
    """``value`` with every nested object that has a ``signature`` signed anew by ``key``."""
    if isinstance(value, list):
        return [_resign_all(v, key) for v in value]
    if not isinstance(value, dict):
        return value
    value = {k: _resign_all(v, key) for k, v in value.items()}
    if isinstance(value.get("signature"), str):
        value = _resign("checkpoint", value, key)
    return value


def _plant_keys(store: Path, key: Ed25519PrivateKey) -> None:
    """Put the attacker's key wherever the store keeps keys (public ones at least)."""
    folder = store / "keys"
    folder.mkdir(exist_ok=True)
    planted = False
    for path in files_under(folder):
        data = path.read_bytes()
        make_writable(path)
        if b"PRIVATE KEY" in data:
            path.write_bytes(private_pem(key))
        elif b"PUBLIC KEY" in data:
            path.write_bytes(public_pem(key))
            planted = True
    if not planted:
        (folder / "signing.pub").write_bytes(public_pem(key))
