"""Ed25519 signing of model manifests, with a key pair created on first use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from mlwarden.errors import SignatureError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

_PRIVATE = "signing.key"
_PUBLIC = "signing.pub"


class Signer:
    """Holds an ed25519 key pair stored as PEM files in ``keys_dir`` (private key mode 0600)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key

    @classmethod
    def load_or_create(cls, keys_dir: Path) -> Signer:
        """Load the key pair from ``keys_dir``, creating it there the first time."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        private_path = keys_dir / _PRIVATE
        if private_path.exists():
            key = _parse_pem(private_path, private=True)
            if not isinstance(key, Ed25519PrivateKey):
                raise SignatureError(f"{private_path} is not an ed25519 private key")
            return cls(key)
        keys_dir.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        (keys_dir / _PUBLIC).write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return cls(key)

    @property
    def public_key_hex(self) -> str:
        """The raw public key, hex-encoded: what a manifest names as its signer."""
        return self._key.public_key().public_bytes_raw().hex()

    def sign(self, message: bytes) -> str:
        """Hex signature of ``message``."""
        return self._key.sign(message).hex()


def load_public_key(keys_dir: Path) -> Ed25519PublicKey:
    """The trusted public key kept beside the store."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    path = keys_dir / _PUBLIC
    if not path.exists():
        raise SignatureError(f"no public key at {path}: nothing signed here can be trusted")
    key = _parse_pem(path, private=False)
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{path} is not an ed25519 public key")
    return key


def _parse_pem(path: Path, *, private: bool) -> object:
    """The key a PEM file holds; a file that does not parse is a ``SignatureError``, not a crash."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    what = "private" if private else "public"
    try:
        data = path.read_bytes()
        if private:
            return serialization.load_pem_private_key(data, password=None)
        return serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        reason = str(exc).split(". ")[0] or type(exc).__name__
        raise SignatureError(
            f"{path} is not a readable PEM ed25519 {what} key ({reason}): "
            "the key file is corrupted or was replaced; nothing it signs can be trusted"
        ) from exc
    except OSError as exc:
        raise SignatureError(f"cannot read the {what} key {path}: {exc.strerror}") from exc


def verify_signature(public_key: Ed25519PublicKey, message: bytes, signature_hex: str) -> None:
    """Raise ``SignatureError`` unless ``signature_hex`` signs ``message`` under ``public_key``."""
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError("manifest signature does not verify") from exc
