"""Append-only, hash-chained record of every artifact, execution and event.

Knows nothing of machine learning: it stores bytes, their hashes, and records that link them.
"""

from mlwarden.lineage._chain import ChainReport
from mlwarden.lineage._checkpoints import (
    Checkpoint,
    CheckpointSet,
    CheckpointSigner,
    SignatureTrust,
    read_checkpoint_file,
    write_checkpoint_file,
)
from mlwarden.lineage._hashing import canonical_json, sha256_bytes, sha256_json
from mlwarden.lineage._key_events import (
    exposure_warnings,
    migrate_store_key,
    publish_public_key,
    refuse_key_in_store,
    revoke_key,
    rotate_key,
    signer_for_store,
    store_policy,
    store_private_key,
)
from mlwarden.lineage._keys import (
    KEY_DIR_ENV,
    KEY_ENV,
    KEY_FILE_ENV,
    TRUST_ENV,
    KeyEvent,
    PinnedKey,
    RevokedKey,
    Signer,
    TrustFile,
    TrustPolicy,
    default_key_dir,
    key_id,
    public_key_hex,
)
from mlwarden.lineage._records import Record
from mlwarden.lineage._store import Appender, LineageStore, hostname
from mlwarden.lineage._trace import (
    ArtifactInfo,
    ExecutionInfo,
    TraceNode,
    UseEdge,
    artifact_info,
    downstream,
    execution_info,
    producer,
    upstream,
)
from mlwarden.lineage._verify import Problem, VerifyReport, verify_store

__all__ = [
    "KEY_DIR_ENV",
    "KEY_ENV",
    "KEY_FILE_ENV",
    "TRUST_ENV",
    "Appender",
    "ArtifactInfo",
    "ChainReport",
    "Checkpoint",
    "CheckpointSet",
    "CheckpointSigner",
    "ExecutionInfo",
    "KeyEvent",
    "LineageStore",
    "PinnedKey",
    "Problem",
    "Record",
    "RevokedKey",
    "SignatureTrust",
    "Signer",
    "TraceNode",
    "TrustFile",
    "TrustPolicy",
    "UseEdge",
    "VerifyReport",
    "artifact_info",
    "canonical_json",
    "default_key_dir",
    "downstream",
    "execution_info",
    "exposure_warnings",
    "hostname",
    "key_id",
    "migrate_store_key",
    "producer",
    "public_key_hex",
    "publish_public_key",
    "read_checkpoint_file",
    "refuse_key_in_store",
    "revoke_key",
    "rotate_key",
    "sha256_bytes",
    "sha256_json",
    "signer_for_store",
    "store_policy",
    "store_private_key",
    "upstream",
    "verify_store",
    "write_checkpoint_file",
]
