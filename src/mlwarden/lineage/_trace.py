"""Walk the graph of artifacts and executions: what made an artifact, and what used it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from mlwarden.errors import IntegrityError, RecordNotFoundError
from mlwarden.lineage._records import Record
from mlwarden.lineage._store import LineageStore

_M = TypeVar("_M", bound=BaseModel)


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


def _field(record: Record, name: str) -> Any:
    """A payload field a reader relies on; a record without it was tampered with."""
    if name not in record.payload:
        raise IntegrityError(
            f"lineage record {record.seq} ({record.kind}) has no {name!r}: the store was "
            "tampered with (run `mlwarden lineage verify`)"
        )
    return record.payload[name]


def _model(cls: type[_M], record: Record, **fields: Any) -> _M:
    try:
        return cls(**fields)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise IntegrityError(
            f"lineage record {record.seq} ({record.kind}): {where}: {problem['msg']}"
        ) from exc


def artifact_info(store: LineageStore, sha256: str) -> ArtifactInfo:
    """The recorded description of an artifact."""
    record = store.artifact_record(sha256)
    if record is None:
        raise RecordNotFoundError(f"no artifact {sha256[:12]} in the store")
    return _model(
        ArtifactInfo,
        record,
        sha256=sha256,
        name=_field(record, "name"),
        media_type=_field(record, "media_type"),
        size=_field(record, "size"),
    )


def execution_info(store: LineageStore, execution_id: str) -> ExecutionInfo:
    """An execution's start record joined with its end record (status ``interrupted`` if none)."""
    started = store.records("execution_started", subject=execution_id)
    if not started:
        raise RecordNotFoundError(f"no execution {execution_id} in the store")
    start = started[0]
    ended = store.records("execution_ended", subject=execution_id)
    fields = {
        name: _field(start, name)
        for name in ("step", "run_id", "params", "code_version", "cache_key", "host")
    }
    return _model(
        ExecutionInfo,
        start,
        id=execution_id,
        **fields,
        started_at=start.created_at,
        ended_at=ended[0].created_at if ended else None,
        status=_field(ended[0], "status") if ended else "interrupted",
    )


def _io(store: LineageStore, execution_id: str, direction: str) -> list[tuple[str, str, int]]:
    """``(sha256, role, seq of the event)`` of what an execution read or wrote."""
    events = store.records("event", subject=execution_id)
    return [
        (e.key or "", _field(e, "role"), e.seq)
        for e in events
        if _field(e, "direction") == direction
    ]


def producer(
    store: LineageStore, sha256: str, *, before: int | None = None
) -> ExecutionInfo | None:
    """The first completed execution that output this artifact (None for a source input).

    ``before`` keeps only outputs recorded before that record seq: what a consumer read must
    have been written before it read it. So a step whose output equals one of its inputs
    (a schema passed through, a table no row was dropped from) is not its own producer.
    """
    for event in store.records("event", key=sha256):
        if _field(event, "direction") != "output":
            continue
        if before is not None and event.seq >= before:
            break
        info = execution_info(store, event.subject)
        if info.status == "completed":
            return info
    return None


def upstream(store: LineageStore, sha256: str, role: str | None = None) -> TraceNode:
    """What made this artifact, back to the source data.

    Raises ``IntegrityError`` if the records form a cycle, which only tampering can make.
    """
    return _upstream(store, sha256, role, before=None, path=frozenset())


def _upstream(
    store: LineageStore,
    sha256: str,
    role: str | None,
    *,
    before: int | None,
    path: frozenset[str],
) -> TraceNode:
    node = TraceNode(artifact=artifact_info(store, sha256), role=role)
    made_by = producer(store, sha256, before=before)
    if made_by is None:
        return node
    if made_by.id in path:
        raise IntegrityError(
            f"lineage cycle: execution {made_by.id[:12]} ({made_by.step}) is its own ancestor "
            f"through artifact {sha256[:12]}; the store was tampered with"
        )
    node.produced_by = made_by
    inner = path | {made_by.id}
    node.inputs = [
        _upstream(store, sha, r, before=seq, path=inner)
        for sha, r, seq in _io(store, made_by.id, "input")
    ]
    return node


def downstream(store: LineageStore, sha256: str, _seen: set[str] | None = None) -> list[UseEdge]:
    """Every completed execution that used this artifact, and what their outputs fed."""
    seen = _seen if _seen is not None else set()
    edges: list[UseEdge] = []
    for event in store.records("event", key=sha256):
        if _field(event, "direction") != "input" or event.subject in seen:
            continue
        seen.add(event.subject)
        info = execution_info(store, event.subject)
        if info.status != "completed":
            continue
        outputs = [
            (artifact_info(store, sha), downstream(store, sha, seen))
            for sha, _, _ in _io(store, info.id, "output")
        ]
        edges.append(UseEdge(execution=info, outputs=outputs))
    return edges
