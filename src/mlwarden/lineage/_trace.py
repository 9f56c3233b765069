"""Walk the graph of artifacts and executions: what made an artifact, and what used it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from mlwarden.errors import RecordNotFoundError
from mlwarden.lineage._store import LineageStore


class ArtifactInfo(BaseModel):
    """An artifact as recorded: hash, logical name, media type and size."""

    sha256: str
    name: str
    media_type: str
    size: int


class ExecutionInfo(BaseModel):
    """One execution of a step: what ran, with which parameters and code, where, how it ended."""

    id: str
    step: str
    run_id: str
    params: dict[str, Any]
    code_version: str
    cache_key: str
    host: str
    started_at: datetime
    ended_at: datetime | None
    status: str


class TraceNode(BaseModel):
    """An artifact with the execution that produced it and, recursively, that one's inputs."""

    artifact: ArtifactInfo
    role: str | None = None
    produced_by: ExecutionInfo | None = None
    inputs: list[TraceNode] = []


class UseEdge(BaseModel):
    """An execution that consumed an artifact, with what it produced and who used those."""

    execution: ExecutionInfo
    outputs: list[tuple[ArtifactInfo, list[UseEdge]]] = []


def artifact_info(store: LineageStore, sha256: str) -> ArtifactInfo:
    """The recorded description of an artifact."""
    record = store.artifact_record(sha256)
    if record is None:
        raise RecordNotFoundError(f"no artifact {sha256[:12]} in the store")
    return ArtifactInfo(
        sha256=sha256,
        name=record.payload["name"],
        media_type=record.payload["media_type"],
        size=record.payload["size"],
    )


def execution_info(store: LineageStore, execution_id: str) -> ExecutionInfo:
    """An execution's start record joined with its end record (status ``interrupted`` if none)."""
    started = store.records("execution_started", subject=execution_id)
    if not started:
        raise RecordNotFoundError(f"no execution {execution_id} in the store")
    start = started[0]
    ended = store.records("execution_ended", subject=execution_id)
    p = start.payload
    return ExecutionInfo(
        id=execution_id,
        step=p["step"],
        run_id=p["run_id"],
        params=p["params"],
        code_version=p["code_version"],
        cache_key=p["cache_key"],
        host=p["host"],
        started_at=start.created_at,
        ended_at=ended[0].created_at if ended else None,
        status=ended[0].payload["status"] if ended else "interrupted",
    )


def _io(store: LineageStore, execution_id: str, direction: str) -> list[tuple[str, str]]:
    events = store.records("event", subject=execution_id)
    return [(e.key or "", e.payload["role"]) for e in events if e.payload["direction"] == direction]


def producer(store: LineageStore, sha256: str) -> ExecutionInfo | None:
    """The first completed execution that output this artifact (None for a source input)."""
    for event in store.records("event", key=sha256):
        if event.payload["direction"] == "output":
            info = execution_info(store, event.subject)
            if info.status == "completed":
                return info
    return None


def upstream(store: LineageStore, sha256: str, role: str | None = None) -> TraceNode:
    """What made this artifact, back to the source data."""
    node = TraceNode(artifact=artifact_info(store, sha256), role=role)
    made_by = producer(store, sha256)
    if made_by is not None:
        node.produced_by = made_by
        node.inputs = [upstream(store, sha, r) for sha, r in _io(store, made_by.id, "input")]
    return node


def downstream(store: LineageStore, sha256: str, _seen: set[str] | None = None) -> list[UseEdge]:
    """Every completed execution that used this artifact, and what their outputs fed."""
    seen = _seen if _seen is not None else set()
    edges: list[UseEdge] = []
    for event in store.records("event", key=sha256):
        if event.payload["direction"] != "input" or event.subject in seen:
            continue
        seen.add(event.subject)
        info = execution_info(store, event.subject)
        if info.status != "completed":
            continue
        outputs = [
            (artifact_info(store, sha), downstream(store, sha, seen))
            for sha, _ in _io(store, info.id, "output")
        ]
        edges.append(UseEdge(execution=info, outputs=outputs))
    return edges
