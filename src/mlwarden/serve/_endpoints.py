"""The server's endpoints besides ``/v1/predict``: the probes, Prometheus metrics, analyst
feedback, a logged decision, lifting a client's block, revoking a key, SHAP explanations."""

import logging
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from mlwarden.errors import DataError, MlwardenError, RecordNotFoundError, StoreError
from mlwarden.serve import _errors
from mlwarden.serve._admission import Admission, retry_after
from mlwarden.serve._api import DecisionLogState, FeedbackRequest, FeedbackResponse, Readiness
from mlwarden.serve._efficacy_monitor import EfficacyMonitor
from mlwarden.serve._guard_run import GuardRun
from mlwarden.serve._guarded import Guarded
from mlwarden.serve._keys import Principal
from mlwarden.serve._predict import (
    ALARM_HEADER,
    FAIL_OPEN_HEADER,
    MODEL_HEADER,
    REQUEST_ID_HEADER,
    check_decision_log,
)
from mlwarden.serve._record import log_decision
from mlwarden.serve._runtime import Router
from mlwarden.serve._schema import RequestRows
from mlwarden.serve._watch import Watchers

_log = logging.getLogger(__name__)


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
        metrics.decision_log_throttled.set(g.decisions.throttled)
        metrics.decision_log_failed.set(g.decisions.failed)
        metrics.decision_log_backlog.set(state.backlog)
        metrics.decision_log_oldest.set(state.oldest_s)
        metrics.decision_log_stalled.set(0 if state.accepting else 1)
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def add_feedback_and_admin(app: FastAPI, g: Guarded, admission: Admission) -> None:
    """``/v1/feedback``, ``/v1/decisions/{request_id}``, ``/v1/admin/unblock/{client}`` and
    ``/v1/admin/revoke/{key_id}``."""
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

    @app.post(
        "/v1/admin/revoke/{key_id}",
        tags=["admin"],
        dependencies=[Depends(admission.require("admin"))],
        responses=_errors.responses(401, 403, 404, 413, 429, 503),
    )
    def revoke(key_id: str) -> dict[str, Any]:
        """Revoke an API key: refused here at once, on replicas sharing state within 1 s."""
        try:
            info = g.keys.revoke(key_id)
        except RecordNotFoundError:
            raise HTTPException(404, _errors.safe_text(f"no api key has id {key_id!r}")) from None
        return {"key_id": info.key_id, "revoked_at": info.revoked_at}


class Explained(BaseModel):
    """One row's answer and its SHAP value per input column."""

    label: str
    values: dict[str, float]


class ExplainResponse(BaseModel):
    """The answer to ``/v1/explain``: ``base_value + sum(values)`` is the explained output
    (``output``: the probability or log-odds of ``explained_class``) of each row."""

    request_id: str
    model: str
    method: str
    output: str
    explained_class: str
    base_value: float
    explanations: list[Explained]


def explain_endpoint(
    g: Guarded, admission: Admission, body: type[BaseModel]
) -> Callable[..., ExplainResponse]:
    """The ``/v1/explain`` handler: SHAP values of each row, within the key's budget, with
    every row screened by the extraction guard as a prediction would be."""
    policy = g.deployment.guards.explain
    watchers = Watchers(g, admission)
    router = Router([r.weight for r in g.deployment.routes], g.deployment.name)
    features = g.schema.features
    cost = len(features) + 1  # an explained row reveals one number per column and the base
    budget = g.state.allowance("explain", policy.max_explanations, policy.window_s, g.clock)

    def refuse_over_budget(client: str, n: int) -> None:
        left = budget.left(client)
        if n <= left:
            return
        g.metrics.guard_alarms.labels(guard="extraction").inc()
        reason = (
            f"explanation budget: {policy.max_explanations} per {policy.window_s:g} s, "
            f"{max(left, 0)} left, {n} asked"
        )
        if admission.restricts(client):
            admission.refuse_thief(client, max(left, 0) + 1, n, reason)
        retry = retry_after(budget.retry_s(client))
        raise HTTPException(429, f"{reason}: retry in {retry} s", headers={"Retry-After": retry})

    def explain(
        body: BaseModel,
        response: Response,
        background: BackgroundTasks,
        principal: Annotated[Principal, Depends(admission.require("explain", charge=False))],
    ) -> ExplainResponse:
        """SHAP values per input column of each row; the schema is the model's."""
        started = time.perf_counter()
        client = principal.key_id
        throttled = admission.refuse_blocked(client)
        batch = RequestRows.of(body, features)
        rows = batch.rows
        burst = admission.limiter.burst
        if len(rows) * cost > burst:
            raise HTTPException(
                413,
                f"an explained row costs {cost} rows of the rate limit (one per input column "
                f"and the base value): a request may explain at most {burst // cost} rows, "
                f"got {len(rows)}",
            )
        refuse_over_budget(client, len(rows))
        run = GuardRun(g.metrics)
        check_decision_log(g, run)
        admission.admit(client, len(rows) * cost, throttled=throttled)
        model = g.routes[router.route(client)]
        explainer = g.explainers.get(model.ref)
        if explainer is None:
            raise HTTPException(501, f"{model.ref} has no SHAP explainer (an early-exit network)")
        proba, _ = watchers.predict_rows(model, batch, client, run)
        if proba is None:
            raise HTTPException(503, "the model failed: nothing to explain")
        extraction = watchers.watch_extraction(client, batch, proba, run)
        frame = batch.frame
        if model.imputation is not None:
            frame = model.imputation.apply(frame)
        try:
            found = explainer.explain(frame)
        except MlwardenError as exc:
            raise HTTPException(503, _errors.safe_text(f"no explanation: {exc}")) from exc
        budget.spend(client, len(rows))
        labels = [str(c) for c in model.classes[proba.argmax(axis=1)]]
        response.headers[MODEL_HEADER] = model.ref
        request_id = uuid.uuid4().hex
        response.headers[REQUEST_ID_HEADER] = request_id
        if run.fail_open:
            response.headers[FAIL_OPEN_HEADER] = ",".join(run.fail_open)
        if extraction is not None and extraction.get("alarm"):
            response.headers[ALARM_HEADER] = "extraction"
        answer = ExplainResponse(
            request_id=request_id,
            model=model.ref,
            method=found.method,
            output=found.output,
            explained_class=str(found.explained_class),
            base_value=found.base_value,
            explanations=[
                Explained(label=label, values=dict(zip(found.features, values, strict=True)))
                for label, values in zip(labels, found.values, strict=True)
            ],
        )
        # Logged as a prediction is: the label answered and everything the client was shown.
        shown = answer.model_dump(mode="json", exclude={"request_id", "model", "explanations"})
        output = [
            {"label": e.label, "explanation": {**shown, "values": e.values}}
            for e in answer.explanations
        ]
        verdicts: dict[str, Any] = {"explain": {"budget_left": budget.left(client)}}
        if extraction is not None:
            verdicts["extraction"] = extraction
        record = (g, request_id, client, model, rows, batch.frame, output, verdicts)
        latency_ms = (time.perf_counter() - started) * 1000.0
        if g.shadow is None:
            try:
                log_decision(*record, run.fail_open, latency_ms, endpoint="explain")
            except Exception:  # the answer stands, the log says why
                _log.exception("decision %s could not be queued", request_id)
        else:
            background.add_task(
                log_decision, *record, run.fail_open, latency_ms, endpoint="explain"
            )
        return answer

    explain.__annotations__["body"] = body
    return explain
