"""The server's endpoints besides ``/v1/predict``: the probes, Prometheus metrics, analyst
feedback, a logged decision and lifting a client's block."""

from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Response
from fastapi.responses import PlainTextResponse

from mlwarden.errors import DataError, RecordNotFoundError, StoreError
from mlwarden.serve import _errors
from mlwarden.serve._admission import Admission, retry_after
from mlwarden.serve._api import DecisionLogState, FeedbackRequest, FeedbackResponse, Readiness
from mlwarden.serve._efficacy_monitor import EfficacyMonitor
from mlwarden.serve._guarded import Guarded
from mlwarden.serve._keys import Principal


def add_probes(app: FastAPI, g: Guarded, admission: Admission) -> None:
    """``/healthz``, ``/readyz`` and ``/metrics``."""
    metrics, log_policy = g.metrics, g.deployment.guards.decisions

    @app.get("/healthz", tags=["probes"], responses=_errors.responses(413))
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["probes"],
        response_model=Readiness,
        responses={
            413: _errors.responses(413)[413],
            503: {"model": Readiness, "description": "The decision log cannot keep up."},
        },
    )
    def readyz(response: Response) -> Readiness:
        """Readiness: models loaded and the decision log keeping up.

        A stalled log makes the server not ready when it fails closed (predict answers 503),
        and ``degraded`` (still 200) when it fails open.
        """
        state = g.decisions.status()
        if state.accepting:
            status = "ready"
        else:
            status = "degraded" if log_policy.on_error == "open" else "not ready"
        response.status_code = 503 if status == "not ready" else 200
        return Readiness(
            status=status,
            models=[m.ref for m in g.routes],
            decision_log=DecisionLogState(on_error=log_policy.on_error, **state.model_dump()),
        )

    @app.get(
        "/metrics",
        tags=["admin"],
        response_class=PlainTextResponse,
        responses=_errors.responses(401, 403, 413, 429, 503),
    )
    def metrics_endpoint(
        _: Annotated[Principal, Depends(admission.require("admin"))],
    ) -> PlainTextResponse:
        """Prometheus metrics (text exposition format)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        state = g.decisions.status()
        metrics.decision_log_dropped.set(g.decisions.dropped)
        metrics.decision_log_failed.set(g.decisions.failed)
        metrics.decision_log_backlog.set(state.backlog)
        metrics.decision_log_oldest.set(state.oldest_s)
        metrics.decision_log_stalled.set(0 if state.accepting else 1)
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def add_feedback_and_admin(app: FastAPI, g: Guarded, admission: Admission) -> None:
    """``/v1/feedback``, ``/v1/decisions/{request_id}`` and ``/v1/admin/unblock/{client}``."""
    log_policy = g.deployment.guards.decisions
    efficacy = EfficacyMonitor.of(g)

    @app.post(
        "/v1/feedback",
        response_model=FeedbackResponse,
        tags=["feedback"],
        responses=_errors.responses(400, 401, 403, 404, 413, 422, 429, 503),
    )
    def feedback(
        body: FeedbackRequest,
        principal: Annotated[Principal, Depends(admission.require("feedback"))],
    ) -> FeedbackResponse:
        """Attach an analyst's true labels to a past request, one per row it held.

        Answers 503 at once while the decision log cannot write, and within
        ``guards.decisions.max_delay_s`` when the database stays locked.
        """
        retry = {"Retry-After": retry_after(log_policy.max_delay_s)}
        state = g.decisions.status()
        if not state.accepting:
            raise HTTPException(503, str(state.reason), headers=retry)
        try:
            g.decisions.feedback(
                body.request_id,
                list(body.labels),
                principal.key_id,
                timeout_s=log_policy.max_delay_s,
            )
        except RecordNotFoundError as exc:
            raise HTTPException(404, str(exc)) from exc
        except DataError as exc:
            raise HTTPException(422, _errors.safe_text(exc)) from exc
        except StoreError as exc:
            raise HTTPException(
                503,
                _errors.safe_text(f"the feedback was not recorded: {exc}"),
                headers=retry,
            ) from exc
        efficacy.feedback_arrived(body.request_id)
        return FeedbackResponse(request_id=body.request_id, stored=len(body.labels))

    @app.get(
        "/v1/decisions/{request_id}",
        tags=["admin"],
        responses=_errors.responses(401, 403, 404, 413, 429, 503),
    )
    def decision(
        request_id: str, _: Annotated[Principal, Depends(admission.require("admin"))]
    ) -> dict[str, Any]:
        """A logged decision with its feedback."""
        g.decisions.settle(log_policy.max_delay_s)  # it may have been answered a moment ago
        record = g.decisions.get(request_id)
        if record is None:
            raise HTTPException(404, _errors.safe_text(f"no decision {request_id!r} in the log"))
        return record.model_dump(mode="json")

    @app.post(
        "/v1/admin/unblock/{client}",
        tags=["admin"],
        responses=_errors.responses(401, 403, 413, 429, 503),
    )
    def unblock(
        client: str, _: Annotated[Principal, Depends(admission.require("admin"))]
    ) -> dict[str, Any]:
        """Lift a block or throttle the extraction guard put on a client (key id)."""
        was = client in g.blocked or client in g.throttled
        g.blocked.discard(client)
        g.throttled.discard(client)
        return {"client": client, "was_restricted": was}
