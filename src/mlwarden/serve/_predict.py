"""``POST /v1/predict``: a request through the guards to the model and back, hardened, with
the headers that say who answered, which guards failed open and which raised an alarm."""

import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import BackgroundTasks, Depends, HTTPException, Response
from pydantic import BaseModel

from mlwarden.serve._admission import Admission, retry_after
from mlwarden.serve._api import Prediction, PredictResponse
from mlwarden.serve._guard_run import GuardRun
from mlwarden.serve._guarded import Guarded
from mlwarden.serve._keys import Principal
from mlwarden.serve._record import log_decision
from mlwarden.serve._runtime import Router, ServedModel
from mlwarden.serve._schema import RequestRows
from mlwarden.serve._watch import Watchers

if TYPE_CHECKING:
    import numpy as np

    from mlwarden.serve._runtime import ExitAnswers

FAIL_OPEN_HEADER = "X-Mlwarden-Fail-Open"
MODEL_HEADER = "X-Mlwarden-Model"
REQUEST_ID_HEADER = "X-Request-Id"
ALARM_HEADER = "X-Mlwarden-Alarm"
CAPPED_HEADER = "X-Mlwarden-Compute-Capped"
_log = logging.getLogger(__name__)


def check_decision_log(g: Guarded, run: GuardRun) -> None:
    """Refuse (closed) or flag (open) a request while the decision log cannot keep up."""
    if g.decisions.healthy():
        return
    state = g.decisions.status()  # why not (or, a moment later, keeping up again)
    if state.accepting:
        return
    policy = g.deployment.guards.decisions
    run.failed(
        "decisions",
        policy.on_error,
        refusal=HTTPException(
            503,
            f"{state.reason}; this deployment fails closed (guards.decisions.on_error)",
            headers={"Retry-After": retry_after(policy.max_delay_s)},
        ),
    )


def hardened_predictions(
    g: Guarded, model: ServedModel, proba: "np.ndarray", answers: "ExitAnswers | None"
) -> list[Prediction]:
    """The answers as the deployment's output policy lets clients see them, with each row's
    exit, compute and cap for an early-exit network."""
    from mlwarden.models import OutputHardening, harden_probabilities, hardened_outputs

    policy = g.deployment.output
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
    if answers is None:
        return predictions
    return [
        p.model_copy(update={"exit": int(e), "compute": float(c), "capped": bool(k)})
        for p, e, c, k in zip(
            predictions, answers.exits, answers.compute, answers.capped, strict=True
        )
    ]


def predict_endpoint(
    g: Guarded, admission: Admission, body: type[BaseModel]
) -> Callable[..., Response]:
    """The ``/v1/predict`` handler of a deployment whose request body is ``body``."""
    watchers = Watchers(g, admission)
    router = Router([r.weight for r in g.deployment.routes], g.deployment.name)
    features, metrics = g.schema.features, g.metrics

    def predict(
        body: BaseModel,
        response: Response,
        background: BackgroundTasks,
        principal: Annotated[Principal, Depends(admission.require("predict", charge=False))],
    ) -> Response:
        """Predict one or many rows; the schema is the model's training schema."""
        started = time.perf_counter()
        client = principal.key_id
        throttled = admission.refuse_blocked(client)
        batch = RequestRows.of(body, features)  # encoded once, shared by the model and guards
        rows = batch.rows
        run = GuardRun(metrics)
        check_decision_log(g, run)
        admission.admit(client, len(rows), throttled=throttled)
        request_id = uuid.uuid4().hex
        model = g.routes[router.route(client)]
        proba, answers = watchers.predict_rows(model, batch, client, run)
        verdicts: dict[str, Any] = {}
        alarms: list[str] = []
        if proba is None:
            run.fail_open.append("model")
            fallback = g.deployment.guards.model.fallback_label
            predictions = [Prediction(label=fallback) for _ in rows]
            labels: list[Any] = [fallback] * len(rows)
        else:
            if answers is not None:
                watched = watchers.watch_slowdown(client, model, answers, run)
                if watched is not None:
                    verdicts["slowdown"] = watched
                    if watched["alarm"]:
                        alarms.append("slowdown")
                if answers.capped.any():
                    response.headers[CAPPED_HEADER] = str(int(answers.capped.sum()))
            extraction = watchers.watch_extraction(client, batch, proba, run)
            if extraction is not None:
                verdicts["extraction"] = extraction
                if extraction.get("alarm"):
                    alarms.append("extraction")
            predictions = hardened_predictions(g, model, proba, answers)
            labels = [p.label for p in predictions]
            watchers.watch_drift(batch, labels, run)
            for label in labels:
                metrics.child(metrics.predictions, model.ref, str(label)).inc()
        response.headers[MODEL_HEADER] = model.ref
        response.headers[REQUEST_ID_HEADER] = request_id
        if run.fail_open:
            response.headers[FAIL_OPEN_HEADER] = ",".join(run.fail_open)
        if alarms:
            response.headers[ALARM_HEADER] = ",".join(alarms)
        answer = PredictResponse(request_id=request_id, model=model.ref, predictions=predictions)
        record = (
            g,
            request_id,
            client,
            model,
            rows,
            batch.frame if g.shadow is not None else None,  # the table only the shadow reads
            answer.model_dump(mode="json")["predictions"],
            verdicts,
            run.fail_open,
            (time.perf_counter() - started) * 1000.0,
        )
        if g.shadow is None:
            # Queued here, on the worker thread: a background task costs a second thread hop
            # per request; the shadow model's answer still waits until after the response.
            try:
                log_decision(*record)
            except Exception:  # as after the response: the answer stands, the log says why
                _log.exception("decision %s could not be queued", request_id)
        else:
            background.add_task(log_decision, *record)
        # Serialized here: a returned model would be validated again on another thread hop.
        sent = Response(answer.model_dump_json(), media_type="application/json")
        sent.raw_headers.extend(response.headers.raw)
        return sent

    # The body's model is built at run time: FastAPI must see the class, not its name.
    predict.__annotations__["body"] = body
    return predict
