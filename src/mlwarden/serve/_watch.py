"""The model's answer to a request and the guards that watch it: the slowdown guard (compute
cap and exit monitor), the extraction guard (each row screened before any is answered) and
the drift monitor. Each guard's failure is handled by :class:`GuardRun`."""

from typing import TYPE_CHECKING, Any

from fastapi import HTTPException

from mlwarden.serve._admission import Admission
from mlwarden.serve._guard_run import GuardRun
from mlwarden.serve._guarded import Guarded
from mlwarden.serve._runtime import ServedModel
from mlwarden.serve._schema import RequestRows

if TYPE_CHECKING:
    import numpy as np

    from mlwarden.serve._runtime import ExitAnswers


class Watchers:
    """The model call and the guards on its answers, for one deployment."""

    def __init__(self, g: Guarded, admission: Admission) -> None:
        self.g = g
        self.admission = admission
        self.guards = g.deployment.guards
        # per route: the column order its model reads a bare matrix in (None: give it a table)
        self._matrix_orders = {
            model.ref: model.matrix_order(g.schema.features) for model in g.routes
        }

    def predict_rows(
        self, model: ServedModel, batch: RequestRows, client: str, run: GuardRun
    ) -> "tuple[np.ndarray | None, ExitAnswers | None]":
        """Probabilities (None when the model failed open) and, for early exit, the exits."""
        import numpy as np

        g, slowdown = self.g, self.guards.slowdown
        cap = None
        if model.early_exit is not None and g.budget is not None and slowdown.enabled:
            budget = g.budget
            cap = run.run(
                "slowdown", slowdown.on_error, lambda: budget.cap_for(client), lambda _: None
            )
        try:
            if model.early_exit is not None:
                answers = model.early_exit.answer(batch.frame, max_exit=cap)
                proba = answers.proba
            else:
                proba, answers = self._proba(model, batch), None
            if not np.isfinite(proba).all():
                raise FloatingPointError("the model answered non-finite probabilities")
            return proba, answers
        except Exception as exc:
            policy = self.guards.model
            g.metrics.model_errors.labels(outcome=policy.on_error).inc()
            if policy.on_error == "closed":
                raise HTTPException(
                    503, f"the model failed ({type(exc).__name__}) and this deployment fails closed"
                ) from exc
            return None, None

    def _proba(self, model: ServedModel, batch: RequestRows) -> "np.ndarray":
        """The model's probabilities, from the rows' numeric matrix when the model reads one
        (ONNX, torch: no table is built), else from the table."""
        order = self._matrix_orders.get(model.ref)
        matrix = batch.matrix_in(order) if order is not None else None
        if matrix is None or model.adapter is None:
            return model.predict_proba(batch.frame)
        return model.adapter.predict_proba(matrix)

    def watch_slowdown(
        self, client: str, model: ServedModel, answers: "ExitAnswers", run: GuardRun
    ) -> dict[str, Any] | None:
        """Account the compute; watch the client's exits; flag it on alarm (then capped)."""
        g, slowdown, metrics = self.g, self.guards.slowdown, self.g.metrics
        metrics.compute.labels(model=model.ref).inc(float(answers.compute.sum()))
        metrics.capped.inc(int(answers.capped.sum()))
        if not slowdown.enabled or g.exits is None or g.budget is None:
            return None
        monitor, budget = g.exits, g.budget

        def observe() -> dict[str, Any] | None:
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

        return run.run("slowdown", slowdown.on_error, observe, lambda _: None)

    def watch_extraction(
        self, client: str, batch: RequestRows, proba: "np.ndarray", run: GuardRun
    ) -> dict[str, Any] | None:
        """Screen the rows in order before any is answered.

        When an alarm would restrict the client, screening stops at the alarming row, the
        client is blocked or throttled and the whole request is refused: a thief never gets
        the answers to the batch that gave it away.
        """
        g, guard = self.g, self.guards.extraction
        if not guard.enabled or g.detectors is None or g.features is None:
            return None
        detectors, space = g.detectors, g.features
        stop = self.admission.restricts(client)
        verdicts = []

        def screen() -> None:
            for x, p in zip(batch.vectors(space), proba, strict=True):
                verdicts.append(detectors.observe_answer(client, x, p))
                if stop and verdicts[-1].alarm:
                    break

        failed: dict[str, Any] | None = run.run(
            "extraction", guard.on_error, screen, lambda exc: {"error": type(exc).__name__}
        )
        if failed is not None:
            return failed
        alarms = [v for v in verdicts if v.alarm]
        if alarms:
            g.metrics.guard_alarms.labels(guard="extraction").inc()
        if alarms and stop:
            self.admission.refuse_thief(client, len(verdicts), len(batch), alarms[0].reason)
        last = (alarms or verdicts)[-1]
        return {
            "alarm": bool(alarms),
            "action": guard.action if alarms else None,
            "verdict": last.model_dump(mode="json"),
        }

    def watch_drift(self, batch: RequestRows, labels: list[Any], run: GuardRun) -> None:
        """Feed the answered rows and labels to the drift monitor."""
        policy, monitor = self.guards.drift, self.g.monitor
        if not policy.enabled or monitor is None:
            return
        run.run(
            "drift", policy.on_error, lambda: monitor.observe(batch.rows, labels), lambda _: None
        )
