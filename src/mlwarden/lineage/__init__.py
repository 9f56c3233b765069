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
    "Appender",
    "ArtifactInfo",
    "ChainReport",
    "Checkpoint",
    "CheckpointSet",
    "CheckpointSigner",
    "ExecutionInfo",
    "LineageStore",
    "Problem",
    "Record",
    "SignatureTrust",
    "TraceNode",
    "UseEdge",
    "VerifyReport",
    "artifact_info",
    "canonical_json",
    "downstream",
    "execution_info",
    "hostname",
    "producer",
    "read_checkpoint_file",
    "sha256_bytes",
    "sha256_json",
    "upstream",
    "verify_store",
    "write_checkpoint_file",
]
