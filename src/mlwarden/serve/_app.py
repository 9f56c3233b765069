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

Who may ask is in ``_admission``, the guards on the model's answers in ``_watch`` (their
``on_error`` applied by ``_guard_run``), the predict path in ``_predict`` and the other
endpoints in ``_endpoints``.
"""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from mlwarden.errors import GuardError
from mlwarden.serve import _errors
from mlwarden.serve._admission import Admission
from mlwarden.serve._api import PredictResponse
from mlwarden.serve._endpoints import (
    ExplainResponse,
    add_feedback_and_admin,
    add_probes,
    explain_endpoint,
)
from mlwarden.serve._guarded import Guarded
from mlwarden.serve._limits import BodyLimit
from mlwarden.serve._metrics import Measure
from mlwarden.serve._predict import predict_endpoint
from mlwarden.serve._schema import request_model

__all__ = ["GuardError", "Guarded", "create_app"]


def create_app(g: Guarded) -> FastAPI:
    """The FastAPI app of one deployment; see the module docstring for the request path."""
    deployment = g.deployment
    max_rows = deployment.max_rows
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
    body_cap = deployment.guards.schema_.body_limit(max_rows, len(g.schema.features))
    app.add_middleware(
        BodyLimit, max_bytes=body_cap, hint=f"send at most {max_rows} rows per request"
    )
    app.add_middleware(Measure, metrics=g.metrics)

    @app.exception_handler(GuardError)
    async def guard_failed(request: Request, exc: GuardError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"guard {exc.guard!r} failed and this deployment fails closed"}, 503
        )

    admission = Admission(g)
    add_probes(app, g, admission)
    app.post(
        "/v1/predict",
        response_model=PredictResponse,
        tags=["predict"],
        responses=_errors.responses(400, 401, 403, 413, 422, 429, 503),
    )(predict_endpoint(g, admission, request_model(g.schema, max_rows)))
    add_feedback_and_admin(app, g, admission)
    if deployment.guards.explain.enabled:
        app.post(
            "/v1/explain",
            response_model=ExplainResponse,
            tags=["explain"],
            responses=_errors.responses(400, 401, 403, 413, 422, 429, 501, 503),
        )(explain_endpoint(g, admission, request_model(g.schema, max_rows)))
    return app
