"""The model-signing key: an elliptic-curve key kept beside the ed25519 signing key.

The OpenSSF ``model_signing`` tool verifies key-based signatures with elliptic-curve keys only
(P-256, P-384, P-521), while mlwarden's own key is ed25519. So a key directory holds a second
key, ``model-signing.key`` (mode 0600, P-256, created on first use next to ``signing.key``) and
its public PEM ``model-signing.pub``. ``$MLWARDEN_MODEL_SIGNING_KEY_FILE`` names a key file
instead (CI); like an environment signing key, it never writes the key directory.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from mlwarden.errors import SignatureError
from mlwarden.lineage._keys import Signer, _parse_pem, ensure_key_dir

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import (
        EllipticCurvePrivateKey,
        EllipticCurvePublicKey,
    )
    from cryptography.hazmat.primitives.hashes import HashAlgorithm

MODEL_KEY_FILE = "model-signing.key"
MODEL_KEY_ENV = "MLWARDEN_MODEL_SIGNING_KEY_FILE"
#: The curves ``model_signing`` accepts, by their cryptography name.
CURVES = ("secp256r1", "secp384r1", "secp521r1")


class ModelSigningKey:
    """An EC private key in a PEM file: ``model_signing`` reads the file, mlwarden signs DSSE."""

    def __init__(self, path: Path, key: EllipticCurvePrivateKey, *, created: bool = False) -> None:
        self.path = path
        self._key = key
        #: Whether this call created the key (the user should back it up).
        self.created = created

    @classmethod
    def from_file(cls, path: Path) -> ModelSigningKey:
        """The EC key a PEM file holds; anything else is a ``SignatureError`` naming the file."""
        from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SignatureError(
                f"cannot read the model-signing key {path}: {exc.strerror}"
            ) from exc
        key = _parse_pem(data, source=str(path), private=True, kind="elliptic-curve")
        if not isinstance(key, EllipticCurvePrivateKey) or key.curve.name not in CURVES:
            raise SignatureError(
                f"{path} is not an elliptic-curve P-256, P-384 or P-521 private key, the only "
                "keys model_signing verifies"
            )
        return cls(path, key)

    @classmethod
    def for_signer(cls, signer: Signer) -> ModelSigningKey | None:
        """``$MLWARDEN_MODEL_SIGNING_KEY_FILE``'s key, else the one in ``signer``'s key dir
        (created there on first use); None for an environment or in-memory signer without one."""
        given = os.environ.get(MODEL_KEY_ENV)
        if given:
            return cls.from_file(Path(given).expanduser())
        if signer.key_dir is None:
            return None
        return cls.load_or_create(signer.key_dir)

    @classmethod
    def load_or_create(cls, key_dir: Path) -> ModelSigningKey:
        """The key dir's model-signing key, else a new P-256 key written there (0600)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        path = key_dir / MODEL_KEY_FILE
        if path.exists():
            return cls.from_file(path)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        ensure_key_dir(key_dir)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return cls.from_file(path)
        except OSError as exc:
            raise SignatureError(f"cannot create the model-signing key {path}: {exc}") from exc
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        made = cls(path, key, created=True)
        path.with_suffix(".pub").write_bytes(made.public_pem())
        return made

    def public_pem(self) -> bytes:
        """The public key as PEM (SubjectPublicKeyInfo): what ``--public_key`` takes."""
        from cryptography.hazmat.primitives import serialization

        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def key_id(self) -> str:
        """sha256 of the public PEM, as ``model_signing`` names the key in its bundle."""
        return hashlib.sha256(self.public_pem()).hexdigest()

    def sign(self, message: bytes) -> bytes:
        """DER ECDSA signature of ``message``, hashed as the curve calls for."""
        from cryptography.hazmat.primitives.asymmetric import ec

        return self._key.sign(message, ec.ECDSA(_hash_for(self._key.public_key())))


def _hash_for(key: EllipticCurvePublicKey) -> HashAlgorithm:
    """SHA-256/384/512 for P-256/384/521, as ``model_signing`` pairs them."""
    from cryptography.hazmat.primitives import hashes

    sizes: dict[int, HashAlgorithm] = {
        256: hashes.SHA256(),
        384: hashes.SHA384(),
        521: hashes.SHA512(),
    }
    return sizes[key.curve.key_size]


def ec_verifies(public_pem: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid ECDSA signature of ``message`` by the PEM public key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec

    key = _parse_pem(
        public_pem, source="the model-signing public key", private=False, kind="elliptic-curve"
    )
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in CURVES:
        raise SignatureError(
            "the model-signing public key is not an elliptic-curve P-256, P-384 or P-521 key"
        )
    try:
        key.verify(signature, message, ec.ECDSA(_hash_for(key)))
    except InvalidSignature:
        return False
    return True
