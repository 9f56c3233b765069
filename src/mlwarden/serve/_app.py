"""The guarded model server: FastAPI app that serves a deployment behind its guards.

A request to ``/v1/predict`` passes, in order: the body cap (413 before parsing), the JSON
parser (400), authentication (API key, role ``predict``), the schema (422 naming the field,
with a bounded excerpt; 413 for more rows than a request may hold), the client block list, the
decision log's state (503 while it cannot keep up, unless it fails open), the per-key rate
limit (429 with ``Retry-After``), the model chosen by sticky A/B routing, the extraction guard
(each row screened before any is answered), the drift monitor, and output hardening. Each
guard fails open or closed as the deployment says; a response that failed open carries
``X-Mlwarden-Fail-Open``. Every response names the model version that answered
(``X-Mlwarden-Model``) and its request id; the decision (input, output, guard verdicts, shadow
answers) is logged after the response is sent.

No client input should make it answer 500: client mistakes are 4xx naming the problem, and the
server's own failures (a guard, the model, the serving database) are 503 saying which.
"""

import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError

from mlwarden.errors import GuardError, StoreError
from mlwarden.serve import _errors
from mlwarden.serve._api import (
    DecisionLogState,
    FeedbackRequest,
    FeedbackResponse,
    Prediction,
    PredictResponse,
    Readiness,
)
from mlwarden.serve._config import Deployment
from mlwarden.serve._keys import Principal
from mlwarden.serve._limits import BodyLimit
from mlwarden.serve._metrics import Measure, ServerMetrics
from mlwarden.serve._record import log_decision
from mlwarden.serve._runtime import Router, ServedModel
from mlwarden.serve._schema import request_model, rows_of

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlwarden.data import TableSchema
    from mlwarden.serve._decisions import DecisionLog
    from mlwarden.serve._detect import DetectorSuite
    from mlwarden.serve._features import FeatureSpace
    from mlwarden.serve._keys import KeyStore
    from mlwarden.serve._monitor import DriftMonitor
    from mlwarden.serve._runtime import ExitAnswers
    from mlwarden.serve._slowdown import ComputeBudget, ExitMonitor

FAIL_OPEN_HEADER = "X-Mlwarden-Fail-Open"
MODEL_HEADER = "X-Mlwarden-Model"
REQUEST_ID_HEADER = "X-Request-Id"
ALARM_HEADER = "X-Mlwarden-Alarm"
CAPPED_HEADER = "X-Mlwarden-Compute-Capped"
ROLES = ("predict", "feedback", "admin")
_log = logging.getLogger(__name__)
_bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An mlwarden API key (`mlwarden keys create`): 'Authorization: Bearer mlw_...'.",
)


@dataclass
class Guarded:
    """Everything the app needs, loaded and verified before it starts."""

    deployment: Deployment
    routes: list[ServedModel]
    shadow: ServedModel | None
    schema: "TableSchema"
    keys: "KeyStore"
    decisions: "DecisionLog"
    lineage_head: str
    features: "FeatureSpace | None" = None
    detectors: "DetectorSuite | None" = None
    monitor: "DriftMonitor | None" = None
    exits: "ExitMonitor | None" = None
    budget: "ComputeBudget | None" = None
    clock: Callable[[], float] = time.monotonic
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    blocked: set[str] = field(default_factory=set)
    throttled: set[str] = field(default_factory=set)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def create_app(g: Guarded) -> FastAPI:
    """The FastAPI app of one deployment; see the module docstring for the request path."""
    from mlwarden.serve._ratelimit import TokenBucketLimiter

    deployment, metrics = g.deployment, g.metrics
    limits = deployment.rate_limit
    limiter = TokenBucketLimiter(limits.rate_per_s, limits.burst, clock=g.clock)
    guard = deployment.guards.extraction
    slow_lane = TokenBucketLimiter(guard.throttle_rate_per_s, 1, clock=g.clock)
    router = Router([r.weight for r in deployment.routes], deployment.name)
    max_rows = deployment.max_rows
    Body = request_model(g.schema, max_rows)
    features = g.schema.features
    log_policy = deployment.guards.decisions
    docs = deployment.docs
    app = FastAPI(
        title=f"mlwarden: {deployment.name}",
        version="1",
        description="A registered model served behind mlwarden's guards.",
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    _errors.install(app)
    app.add_exception_handler(SQLAlchemyError, _errors.on_store_error)

    def require(role: str, *, charge: bool = True) -> Callable[..., Principal]:
        """The dependency checking a key for ``role``; ``charge``: spend one row of its rate
        limit (``/v1/predict`` charges its rows itself)."""

        def check(
            request: Request,
            _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
        ) -> Principal:
            key = _bearer(request)
            if key is None:
                metrics.auth_failures.labels(reason="missing").inc()
                raise HTTPException(
                    401,
                    "missing API key: send 'Authorization: Bearer KEY'",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            principal = g.keys.authenticate(key)
            if principal is None:
                metrics.auth_failures.labels(reason="invalid").inc()
                raise HTTPException(
                    401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
                )
            if not principal.allows(role):  # type: ignore[arg-type]
                metrics.auth_failures.labels(reason="role").inc()
                raise HTTPException(
                    403, f"this key has role {principal.role!r}; {request.url.path} needs {role!r}"
                )
            if charge:
                admit(principal.key_id, 1)
            return principal

        return check

    body_cap = deployment.guards.schema_.body_limit(max_rows, len(features))
    app.add_middleware(
        BodyLimit, max_bytes=body_cap, hint=f"send at most {max_rows} rows per request"
    )
    app.add_middleware(Measure, metrics=metrics)

    @app.exception_handler(GuardError)
    async def guard_failed(request: Request, exc: GuardError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"guard {exc.guard!r} failed and this deployment fails closed"}, 503
        )

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
        _: Annotated[Principal, Depends(require("admin"))],
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

    def check_decision_log(fail_open: list[str]) -> None:
        """Refuse (closed) or flag (open) a request while the decision log cannot keep up."""
        state = g.decisions.status()
        if state.accepting:
            return
        metrics.guard_errors.labels(guard="decisions", outcome=log_policy.on_error).inc()
        if log_policy.on_error == "open":
            fail_open.append("decisions")
            return
        raise HTTPException(
            503,
            f"{state.reason}; this deployment fails closed (guards.decisions.on_error)",
            headers={"Retry-After": _retry_after(log_policy.max_delay_s)},
        )

    def admit(client: str, cost: int) -> None:
        """Spend ``cost`` rows from the client's buckets, or refuse with 413 or 429."""
        lanes = [(limiter, False)]
        if client in g.throttled:
            lanes.append((slow_lane, True))
        for bucket, throttled in lanes:
            if cost > bucket.burst:
                metrics.rate_limited.inc()
                if not throttled:
                    raise HTTPException(
                        413,
                        f"a request may hold at most {bucket.burst} rows (rate_limit.burst), "
                        f"got {cost}: split it",
                    )
                retry = _retry_after(bucket.wait_s(client, bucket.burst))
                raise HTTPException(
                    429,
                    f"this client is throttled after an extraction alarm to "
                    f"{bucket.rate_per_s:g} rows/s and {bucket.burst} row per request: send "
                    f"one row at a time, the next in {retry} s",
                    headers={"Retry-After": retry},
                )
            decision = bucket.acquire(client, cost=cost)
            if not decision.allowed:
                metrics.rate_limited.inc()
                retry = _retry_after(decision.retry_after_s)
                raise HTTPException(
                    429, f"rate limit: retry in {retry} s", headers={"Retry-After": retry}
                )

    slowdown = deployment.guards.slowdown

    def guarded_slowdown(action: Callable[[], Any], fail_open: list[str]) -> Any:
        """Run a slowdown-guard step; on its failure, fail as the deployment says."""
        try:
            return action()
        except Exception as exc:
            metrics.guard_errors.labels(guard="slowdown", outcome=slowdown.on_error).inc()
            if slowdown.on_error == "closed":
                raise GuardError("slowdown") from exc
            fail_open.append("slowdown")
            return None

    def predict_rows(
        model: ServedModel, frame: "pd.DataFrame", client: str, fail_open: list[str]
    ) -> "tuple[np.ndarray | None, ExitAnswers | None]":
        """Probabilities (None when the model failed open) and, for early exit, the exits."""
        import numpy as np

        cap = None
        if model.early_exit is not None and g.budget is not None and slowdown.enabled:
            budget = g.budget
            cap = guarded_slowdown(lambda: budget.cap_for(client), fail_open)
        try:
            if model.early_exit is not None:
                answers = model.early_exit.answer(frame, max_exit=cap)
                proba = answers.proba
            else:
                proba, answers = model.predict_proba(frame), None
            if not np.isfinite(proba).all():
                raise FloatingPointError("the model answered non-finite probabilities")
            return proba, answers
        except Exception as exc:
            policy = deployment.guards.model
            metrics.model_errors.labels(outcome=policy.on_error).inc()
            if policy.on_error == "closed":
                raise HTTPException(
                    503, f"the model failed ({type(exc).__name__}) and this deployment fails closed"
                ) from exc
            return None, None

    def watch_slowdown(
        client: str, model: ServedModel, answers: "ExitAnswers", fail_open: list[str]
    ) -> dict[str, Any] | None:
        """Account the compute; watch the client's exits; flag it on alarm (then capped)."""
        metrics.compute.labels(model=model.ref).inc(float(answers.compute.sum()))
        metrics.capped.inc(int(answers.capped.sum()))
        if not slowdown.enabled or g.exits is None or g.budget is None:
            return None
        monitor, budget = g.exits, g.budget

        def observe() -> dict[str, Any]:
            verdicts = [
                monitor.observe(client, int(e), float(c))
                for e, c in zip(answers.exits, answers.compute, strict=True)
            ]
            budget.charge(client, float(answers.compute.sum()))
            alarms = [v for v in verdicts if v.alarm]
            if alarms:
                metrics.guard_alarms.labels(guard="slowdown").inc()
                budget.flag(client)
            last = (alarms or verdicts)[-1]
            return {
                "alarm": bool(alarms),
                "capped": int(answers.capped.sum()),
                "verdict": last.model_dump(mode="json"),
            }

        result: dict[str, Any] | None = guarded_slowdown(observe, fail_open)
        return result

    def restricts(client: str) -> bool:
        """Whether an alarm now would newly block or throttle ``client``."""
        if guard.action == "block":
            return True
        return guard.action == "throttle" and client not in g.throttled

    def watch_extraction(
        client: str, rows: list[dict[str, Any]], proba: "np.ndarray", fail_open: list[str]
    ) -> dict[str, Any] | None:
        """Screen the rows in order before any is answered.

        When an alarm would restrict the client, screening stops at the alarming row, the
        client is blocked or throttled and the whole request is refused: a thief never gets
        the answers to the batch that gave it away.
        """
        if not guard.enabled or g.detectors is None or g.features is None:
            return None
        stop = restricts(client)
        verdicts = []
        try:
            vectors = g.features.transform(rows)  # per-row dicts: no DataFrame round trip
            for x, p in zip(vectors, proba, strict=True):
                verdicts.append(g.detectors.observe_answer(client, x, p))
                if stop and verdicts[-1].alarm:
                    break
        except Exception as exc:
            metrics.guard_errors.labels(guard="extraction", outcome=guard.on_error).inc()
            if guard.on_error == "closed":
                raise GuardError("extraction") from exc
            fail_open.append("extraction")
            return {"error": type(exc).__name__}
        alarms = [v for v in verdicts if v.alarm]
        if alarms:
            metrics.guard_alarms.labels(guard="extraction").inc()
        if alarms and stop:
            refuse_thief(client, len(verdicts), len(rows), alarms[0].reason)
        last = (alarms or verdicts)[-1]
        return {
            "alarm": bool(alarms),
            "action": guard.action if alarms else None,
            "verdict": last.model_dump(mode="json"),
        }

    def refuse_thief(client: str, row: int, rows: int, reason: str) -> None:
        """Block or throttle ``client`` and refuse the request that raised the alarm."""
        _log.warning("extraction alarm: client %s, row %d of %d: %s", client, row, rows, reason)
        what = f"row {row} of this request raised the extraction alarm ({reason}); no row of it "
        if guard.action == "block":
            g.blocked.add(client)
            metrics.blocked.inc()
            raise HTTPException(403, f"{what}was answered and this client is now blocked")
        g.throttled.add(client)
        metrics.rate_limited.inc()
        retry = _retry_after(slow_lane.wait_s(client, 1))
        raise HTTPException(
            429,
            f"{what}was answered and this client is now throttled to "
            f"{guard.throttle_rate_per_s:g} rows/s, one row per request",
            headers={"Retry-After": retry},
        )

    def watch_drift(rows: list[dict[str, Any]], labels: list[Any], fail_open: list[str]) -> None:
        policy = deployment.guards.drift
        if not policy.enabled or g.monitor is None:
            return
        try:
            g.monitor.observe(rows, labels)
        except Exception as exc:
            metrics.guard_errors.labels(guard="drift", outcome=policy.on_error).inc()
            if policy.on_error == "closed":
                raise GuardError("drift") from exc
            fail_open.append("drift")

    def predict(
        body: Body,  # type: ignore[valid-type]
        response: Response,
        background: BackgroundTasks,
        principal: Annotated[Principal, Depends(require("predict", charge=False))],
    ) -> PredictResponse:
        """Predict one or many rows; the schema is the model's training schema."""
        import pandas as pd

        from mlwarden.models import (
            OutputHardening,
            harden_probabilities,
            hardened_outputs,
        )

        started = time.perf_counter()
        client = principal.key_id
        if client in g.blocked:
            metrics.blocked.inc()
            raise HTTPException(
                403, "this client is blocked: its queries look like a model extraction attack"
            )
        rows = rows_of(body)
        fail_open: list[str] = []
        check_decision_log(fail_open)
        admit(client, len(rows))
        request_id = uuid.uuid4().hex
        model = g.routes[router.route(client)]
        frame = pd.DataFrame(rows, columns=features)
        proba, answers = predict_rows(model, frame, client, fail_open)
        verdicts: dict[str, Any] = {}
        alarms: list[str] = []
        if proba is None:
            fail_open.append("model")
            fallback = deployment.guards.model.fallback_label
            predictions = [Prediction(label=fallback) for _ in rows]
            labels: list[Any] = [fallback] * len(rows)
        else:
            if answers is not None:
                watched = watch_slowdown(client, model, answers, fail_open)
                if watched is not None:
                    verdicts["slowdown"] = watched
                    if watched["alarm"]:
                        alarms.append("slowdown")
                if answers.capped.any():
                    response.headers[CAPPED_HEADER] = str(int(answers.capped.sum()))
            extraction = watch_extraction(client, rows, proba, fail_open)
            if extraction is not None:
                verdicts["extraction"] = extraction
                if extraction.get("alarm"):
                    alarms.append("extraction")
            policy = deployment.output
            top, visible = harden_probabilities(
                proba, OutputHardening(mode=policy.mode, decimals=policy.decimals)
            )
            classes = [str(c) for c in model.classes]
            predictions = [
                Prediction(
                    label=o.label,
                    probabilities=dict(zip(classes, o.probabilities, strict=True))
                    if o.probabilities is not None
                    else None,
                    confidence=o.confidence,
                )
                for o in hardened_outputs(top, visible, model.classes, policy.mode)
            ]
            if answers is not None:
                predictions = [
                    p.model_copy(update={"exit": int(e), "compute": float(c), "capped": bool(k)})
                    for p, e, c, k in zip(
                        predictions, answers.exits, answers.compute, answers.capped, strict=True
                    )
                ]
            labels = [p.label for p in predictions]
            watch_drift(rows, labels, fail_open)
            for label in labels:
                metrics.predictions.labels(model=model.ref, label=str(label)).inc()
        response.headers[MODEL_HEADER] = model.ref
        response.headers[REQUEST_ID_HEADER] = request_id
        if fail_open:
            response.headers[FAIL_OPEN_HEADER] = ",".join(fail_open)
        if alarms:
            response.headers[ALARM_HEADER] = ",".join(alarms)
        answer = PredictResponse(request_id=request_id, model=model.ref, predictions=predictions)
        background.add_task(
            log_decision,
            g,
            request_id,
            client,
            model,
            rows,
            frame,
            answer.model_dump(mode="json")["predictions"],
            verdicts,
            fail_open,
            (time.perf_counter() - started) * 1000.0,
        )
        return answer

    # The body's model is built at run time: FastAPI must see the class, not its name.
    predict.__annotations__["body"] = Body
    app.post(
        "/v1/predict",
        response_model=PredictResponse,
        tags=["predict"],
        responses=_errors.responses(400, 401, 403, 413, 422, 429, 503),
    )(predict)

    def log_unavailable() -> HTTPException | None:
        state = g.decisions.status()
        if state.accepting:
            return None
        return HTTPException(
            503, str(state.reason), headers={"Retry-After": _retry_after(log_policy.max_delay_s)}
        )

    @app.post(
        "/v1/feedback",
        response_model=FeedbackResponse,
        tags=["feedback"],
        responses=_errors.responses(400, 401, 403, 404, 413, 422, 429, 503),
    )
    def feedback(
        body: FeedbackRequest,
        principal: Annotated[Principal, Depends(require("feedback"))],
    ) -> FeedbackResponse:
        """Attach an analyst's true labels to a past request, one per row it held.

        Answers 503 at once while the decision log cannot write, and within
        ``guards.decisions.max_delay_s`` when the database stays locked.
        """
        from mlwarden.errors import DataError, RecordNotFoundError

        unavailable = log_unavailable()
        if unavailable is not None:
            raise unavailable
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
                headers={"Retry-After": _retry_after(log_policy.max_delay_s)},
            ) from exc
        return FeedbackResponse(request_id=body.request_id, stored=len(body.labels))

    @app.get(
        "/v1/decisions/{request_id}",
        tags=["admin"],
        responses=_errors.responses(401, 403, 404, 413, 429, 503),
    )
    def decision(
        request_id: str, _: Annotated[Principal, Depends(require("admin"))]
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
    def unblock(client: str, _: Annotated[Principal, Depends(require("admin"))]) -> dict[str, Any]:
        """Lift a block or throttle the extraction guard put on a client (key id)."""
        was = client in g.blocked or client in g.throttled
        g.blocked.discard(client)
        g.throttled.discard(client)
        return {"client": client, "was_restricted": was}

    return app
