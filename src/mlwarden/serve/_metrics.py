"""The server's Prometheus metrics: base units, ``_total`` on counters, no per-client labels.

Each app has its own registry, so two servers (or two tests) in one process never share
counters. Label values are bounded sets: endpoint paths, status classes, guard names, model
versions of the deployment and the model's classes.

The counters the alert rules watch with ``increase()`` start at 0 for every known label set:
a series that first appears at 1 has no earlier sample to rise from, so Prometheus would
never see the first extraction alarm or fail-open of a process (found by
``tests/serve/test_monitoring_stack.py`` against a real Prometheus).
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Known label values of the counters that start at 0 (see the module docstring).
ALARMING_GUARDS = ("extraction", "slowdown")
GUARDS = ("extraction", "drift", "slowdown", "decisions")
OUTCOMES = ("closed", "open")
DRIFT_KINDS = ("input", "prediction")
AUTH_FAILURES = ("missing", "invalid", "role")


class ServerMetrics:
    """Counters, histograms and gauges of one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "mlwarden_requests", "HTTP requests answered.", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "mlwarden_request_duration_seconds",
            "Time to answer a request.",
            ["endpoint"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.predictions = Counter(
            "mlwarden_predictions",
            "Rows answered, by model version and label.",
            ["model", "label"],
            registry=r,
        )
        self.shadow_disagreements = Counter(
            "mlwarden_shadow_disagreements",
            "Rows where the shadow model's label differed.",
            ["model"],
            registry=r,
        )
        self.guard_alarms = Counter(
            "mlwarden_guard_alarms", "Alarms raised by a guard.", ["guard"], registry=r
        )
        self.guard_errors = Counter(
            "mlwarden_guard_errors",
            "Guards that failed, and whether the server failed open.",
            ["guard", "outcome"],
            registry=r,
        )
        self.model_errors = Counter(
            "mlwarden_model_errors", "Model failures, by outcome.", ["outcome"], registry=r
        )
        self.rate_limited = Counter(
            "mlwarden_rate_limited", "Requests refused by the per-key rate limit.", registry=r
        )
        self.blocked = Counter(
            "mlwarden_blocked_requests", "Requests refused from blocked clients.", registry=r
        )
        self.auth_failures = Counter(
            "mlwarden_auth_failures",
            "Requests with a missing, bad or under-privileged key.",
            ["reason"],
            registry=r,
        )
        self.input_drift = Gauge(
            "mlwarden_input_drift_columns",
            "Feature columns drifted in the latest window against the training reference.",
            registry=r,
        )
        self.input_drift_psi = Gauge(
            "mlwarden_input_drift_max_psi",
            "Largest population stability index over features in the latest window.",
            registry=r,
        )
        self.prediction_drift_psi = Gauge(
            "mlwarden_prediction_drift_psi",
            "Population stability index of the predicted-label mix against the reference.",
            registry=r,
        )
        self.drift_alarms = Counter(
            "mlwarden_drift_alarms", "Windows found drifted.", ["kind"], registry=r
        )
        self.compute = Counter(
            "mlwarden_inference_compute",
            "Compute spent by early-exit models, in full-network passes.",
            ["model"],
            registry=r,
        )
        self.capped = Counter(
            "mlwarden_capped_answers", "Answers cut short by a compute cap.", registry=r
        )
        self.decision_log_dropped = Gauge(
            "mlwarden_decision_log_dropped",
            "Decision records the log could not keep (queue full).",
            registry=r,
        )
        self.decision_log_throttled = Gauge(
            "mlwarden_decision_log_throttled",
            "Requests that waited for the lagging decision log before being answered.",
            registry=r,
        )
        self.decision_log_backlog = Gauge(
            "mlwarden_decision_log_backlog",
            "Decision records waiting to be written.",
            registry=r,
        )
        self.decision_log_oldest = Gauge(
            "mlwarden_decision_log_oldest_seconds",
            "How long the oldest unwritten decision record has waited.",
            registry=r,
        )
        self.decision_log_failed = Gauge(
            "mlwarden_decision_log_failed",
            "Decision records the writer could not store (each logged with its request id).",
            registry=r,
        )
        self.decision_log_stalled = Gauge(
            "mlwarden_decision_log_stalled",
            "1 while the decision log cannot keep up (predict refuses or fails open), else 0.",
            registry=r,
        )
        arm = ["model", "version", "arm"]
        self.efficacy_precision = Gauge(
            "mlwarden_efficacy_precision",
            "Precision of the positive class over the rolling window of labelled rows.",
            arm,
            registry=r,
        )
        self.efficacy_recall = Gauge(
            "mlwarden_efficacy_recall",
            "Recall of the positive class over the rolling window of labelled rows.",
            arm,
            registry=r,
        )
        self.efficacy_f1 = Gauge(
            "mlwarden_efficacy_f1",
            "F1 of the positive class over the rolling window of labelled rows.",
            arm,
            registry=r,
        )
        self.efficacy_calibration_error = Gauge(
            "mlwarden_efficacy_calibration_error",
            "Expected calibration error (equal-width bins) over the rolling window.",
            arm,
            registry=r,
        )
        self.efficacy_labelled = Gauge(
            "mlwarden_efficacy_labelled",
            "Labelled rows in the rolling efficacy window.",
            arm,
            registry=r,
        )
        self.efficacy_ab_f1_difference = Gauge(
            "mlwarden_efficacy_ab_f1_difference",
            "F1 of arm b minus arm a over their rolling windows (NaN while undefined).",
            ["a", "b"],
            registry=r,
        )
        self.efficacy_ab_significant = Gauge(
            "mlwarden_efficacy_ab_significant",
            "1 when the arms' F1 difference is significant (95% bootstrap interval excludes 0"
            " and both windows hold enough labels), else 0.",
            ["a", "b"],
            registry=r,
        )
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._start_at_zero()

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, looked up once per label set (the request path asks for
        the same few children on every request; prometheus_client checks and locks each time).
        Label sets stay the bounded ones the module docstring names."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def _start_at_zero(self) -> None:
        """Export every known label set of the alerting counters at 0 from the start."""
        for guard in ALARMING_GUARDS:
            self.guard_alarms.labels(guard=guard)
        for guard in GUARDS:
            for outcome in OUTCOMES:
                self.guard_errors.labels(guard=guard, outcome=outcome)
        for outcome in OUTCOMES:
            self.model_errors.labels(outcome=outcome)
        for kind in DRIFT_KINDS:
            self.drift_alarms.labels(kind=kind)
        for reason in AUTH_FAILURES:
            self.auth_failures.labels(reason=reason)


_STATUS_CLASSES = {n: f"{n}xx" for n in range(1, 6)}


class Measure:
    """Pure ASGI middleware counting requests and timing them by route and status class.

    (Starlette's ``BaseHTTPMiddleware`` would wrap every response in a stream: measurably
    slower per request.)
    """

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            m = self.metrics
            m.child(m.latency, endpoint).observe(time.perf_counter() - started)
            kind = _STATUS_CLASSES.get(status // 100) or f"{status // 100}xx"
            m.child(m.requests, endpoint, kind).inc()
