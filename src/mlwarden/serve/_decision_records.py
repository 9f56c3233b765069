"""What the decision log stores: one served decision, an analyst's feedback, and their errors.

Stored bodies are the canonical JSON of these models (``stored_body``); the chain hashes those
bytes exactly as stored.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    model_validator,
)

from mlwarden.errors import DataError, FormatError, IntegrityError, RecordNotFoundError, StoreError
from mlwarden.lineage import canonical_json, sha256_json

DECISION_FORMAT = 1
_SHA256 = r"^[0-9a-f]{64}$"
STORED = {"stored": True}


class DecisionNotFoundError(RecordNotFoundError):
    """No logged decision has the given request id."""


class FeedbackError(DataError):
    """Feedback labels do not fit the decision they are for (one label per input row)."""


class DecisionWriteError(StoreError):
    """The background writer could not store some decisions; the log names each one."""


class DecisionLogClosedError(StoreError):
    """The decision log was closed; nothing more can be appended."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _request_id() -> str:
    return uuid.uuid4().hex


class ShadowResult(BaseModel):
    """What one shadow model answered to the same input (recorded, never served)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_ref: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    output: JsonValue


class Feedback(BaseModel):
    """An analyst's labels for a logged decision, one per input row."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str
    labels: list[JsonValue]
    analyst: str = Field(min_length=1, max_length=128)
    created_at: AwareDatetime


class DecisionRecord(BaseModel):
    """One served request, as logged; ``feedback`` is filled in by reads and never stored here.

    ``input_sha256`` is computed from ``input`` when not given, and checked when given.
    ``endpoint`` says which endpoint answered; a prediction's is left out of the stored body,
    so records written before explanations were logged keep their bytes and hashes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str = Field(default_factory=_request_id, pattern=r"^[0-9a-f]{32}$")
    endpoint: Literal["predict", "explain"] = Field(
        default="predict", exclude_if=lambda v: v == "predict"
    )
    created_at: AwareDatetime = Field(default_factory=_utcnow)
    client: str = Field(min_length=1, max_length=128)
    model_ref: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    model_sha256: str = Field(pattern=_SHA256)
    shadow: list[ShadowResult] = Field(default_factory=list)
    input: list[dict[str, JsonValue]]
    input_sha256: str = Field(default="", pattern=_SHA256)
    output: JsonValue
    guards: dict[str, JsonValue] = Field(default_factory=dict)
    fail_open: dict[str, bool] = Field(default_factory=dict)
    latency_ms: float = Field(ge=0, allow_inf_nan=False)
    lineage_head: str = Field(pattern=_SHA256)
    feedback: list[Feedback] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _input_hash(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict) or "input" not in data:
            return data
        if info.context and info.context.get("stored"):
            return data  # read back from the log: verify() checks it, reads stay cheap
        try:
            digest = sha256_json(data["input"])
        except (TypeError, ValueError):
            return data  # not JSON: the field validation says so
        given = data.get("input_sha256")
        if not given:
            return {**data, "input_sha256": digest}
        if given != digest:
            raise FormatError(f"input_sha256 {given} is not the sha256 of the input ({digest})")
        return data


class PendingDecision:
    """A served decision as the request thread queues it: plain values, nothing validated.

    The writer thread turns it into its :class:`DecisionRecord` (:meth:`record`), whose
    validation, canonical JSON and hashes would otherwise cost the request path; the record
    is the one the request thread would have built, so the stored bytes are the same.
    ``created_at`` is taken when the decision is queued, as the record's default would be.
    """

    __slots__ = (
        "client",
        "created_at",
        "endpoint",
        "fail_open",
        "guards",
        "input",
        "latency_ms",
        "lineage_head",
        "model_ref",
        "model_sha256",
        "output",
        "request_id",
        "shadow",
    )

    def __init__(
        self,
        *,
        request_id: str,
        client: str,
        model_ref: str,
        model_sha256: str,
        lineage_head: str,
        input: list[dict[str, Any]],
        output: Any,
        guards: dict[str, Any],
        fail_open: list[str],
        shadow: list[ShadowResult],
        latency_ms: float,
        created_at: datetime | None = None,
        endpoint: Literal["predict", "explain"] = "predict",
    ) -> None:
        self.request_id = request_id
        self.endpoint = endpoint
        self.client = client
        self.model_ref = model_ref
        self.model_sha256 = model_sha256
        self.lineage_head = lineage_head
        self.input = input
        self.output = output
        self.guards = guards
        self.fail_open = fail_open
        self.shadow = shadow
        self.latency_ms = latency_ms
        self.created_at = created_at if created_at is not None else _utcnow()

    def record(self) -> DecisionRecord:
        """The validated record (raises pydantic's ``ValidationError`` as the record would)."""
        return DecisionRecord(
            request_id=self.request_id,
            endpoint=self.endpoint,
            created_at=self.created_at,
            client=self.client,
            model_ref=self.model_ref,
            model_sha256=self.model_sha256,
            lineage_head=self.lineage_head,
            input=self.input,
            output=self.output,
            guards=self.guards,
            fail_open={guard: True for guard in self.fail_open},
            shadow=self.shadow,
            latency_ms=self.latency_ms,
        )


Queued = DecisionRecord | PendingDecision
"""What the decision writer's queue holds: a built record, or one it builds itself."""


class LogStatus(BaseModel):
    """Whether the log keeps up: what readiness and the request path ask before answering."""

    accepting: bool
    backlog: int
    oldest_s: float
    reason: str | None = None


class FeedbackRow(BaseModel):
    """One input row joined with its label: a training example from production feedback."""

    request_id: str
    row_index: int
    features: dict[str, JsonValue]
    label: JsonValue
    model_ref: str
    analyst: str
    labelled_at: datetime


def stored_body(model: BaseModel, exclude: set[str] | None = None) -> tuple[dict[str, Any], bytes]:
    """The JSON form of ``model`` and its canonical bytes, which are what is stored and hashed."""
    data = model.model_dump(mode="json", exclude=exclude)
    return data, canonical_json(data)


def load_body(text: str, request_id: str) -> dict[str, Any]:
    """A stored body as a JSON object; anything else is an ``IntegrityError`` (run verify)."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise IntegrityError(f"the log row of request {request_id} is unreadable: {exc}") from exc
    if not isinstance(body, dict):
        raise IntegrityError(f"the log row of request {request_id} is not a JSON object")
    return body


def input_digest(body: dict[str, Any]) -> str | None:
    """The sha256 of a stored body's input rows, None if they are not JSON."""
    try:
        return sha256_json(body.get("input"))
    except (TypeError, ValueError):
        return None


def labelled_rows(
    decisions: Iterable[tuple[int, dict[str, Any]]], latest: dict[str, dict[str, Any]]
) -> list[FeedbackRow]:
    """Each stored decision body's input rows with the labels of its latest feedback body."""
    out: list[FeedbackRow] = []
    for _, body in decisions:
        fb = latest[body["request_id"]]
        for index, (features, label) in enumerate(zip(body["input"], fb["labels"], strict=False)):
            out.append(
                FeedbackRow(
                    request_id=body["request_id"],
                    row_index=index,
                    features=features,
                    label=label,
                    model_ref=body["model_ref"],
                    analyst=fb["analyst"],
                    labelled_at=datetime.fromisoformat(fb["created_at"]),
                )
            )
    return out
