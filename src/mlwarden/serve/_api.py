"""The bodies of the server's API: what ``/v1/predict``, ``/v1/feedback`` and ``/readyz`` answer
and take (request rows are generated from the training schema in :mod:`._schema`; refusals are
in :mod:`._errors`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field


class Prediction(BaseModel):
    """One row's answer; fields the deployment's output mode hides are absent.

    Early-exit models also say which exit answered and what share of the full network's
    compute it took (``capped``: cut short by the client's compute cap).
    """

    label: Any
    probabilities: dict[str, float] | None = None
    confidence: float | None = None
    exit: int | None = None
    compute: float | None = None
    capped: bool | None = None


class PredictResponse(BaseModel):
    """The answer to ``/v1/predict``."""

    request_id: str
    model: str
    predictions: list[Prediction]


class FeedbackRequest(BaseModel):
    """An analyst's true labels for the rows of a past request."""

    request_id: str = Field(min_length=1, max_length=64)
    labels: list[str | int | Annotated[float, Field(allow_inf_nan=False)] | bool] = Field(
        min_length=1
    )


class FeedbackResponse(BaseModel):
    """Acknowledges stored feedback."""

    request_id: str
    stored: int


class DecisionLogState(BaseModel):
    """The decision log as ``/readyz`` reports it."""

    accepting: bool
    backlog: int
    oldest_s: float
    reason: str | None = None
    on_error: str


class Readiness(BaseModel):
    """``/readyz``: ``ready``, ``degraded`` (the decision log stalled, failing open) or
    ``not ready``."""

    status: str
    models: list[str]
    decision_log: DecisionLogState
