"""Append-only, hash-chained record of every artifact, execution and event.

Knows nothing of machine learning: it stores bytes, their hashes, and records that link them.
"""

from mlwarden.lineage._chain import (
    GENESIS,
    ChainReport,
    ChainTable,
    ChainWalk,
    ProblemList,
    database_check,
    db_cause,
)
from mlwarden.lineage._checkpoints import (
    Checkpoint,
    CheckpointSet,
    CheckpointSigner,
    SignatureTrust,
    check_against_chain,
    check_chain_checkpoints,
    make_checkpoint,
    parse_checkpoint,
    read_checkpoint_file,
    write_checkpoint_file,
)
from mlwarden.lineage._hashing import canonical_json, sha256_bytes, sha256_json
from mlwarden.lineage._key_events import (
    exposure_warnings,
    known_key,
    local_witness_path,
    migrate_store_key,
    publish_public_key,
    refuse_key_in_store,
    remember_checkpoint,
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
from mlwarden.lineage._model_key import MODEL_KEY_ENV, ModelSigningKey, ec_verifies
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
    "local_witness_path",
    "migrate_store_key",
    "producer",
    "public_key_hex",
    "publish_public_key",
    "read_checkpoint_file",
    "refuse_key_in_store",
    "remember_checkpoint",
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

__all__ += [
    "GENESIS",
    "ChainTable",
    "ChainWalk",
    "ProblemList",
    "check_against_chain",
    "check_chain_checkpoints",
    "database_check",
    "db_cause",
    "known_key",
    "make_checkpoint",
    "parse_checkpoint",
]

__all__ += ["MODEL_KEY_ENV", "ModelSigningKey", "ec_verifies"]
