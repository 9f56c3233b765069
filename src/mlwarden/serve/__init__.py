"""The guarded model server: a registered model behind authentication, rate limits, schema
checks, output hardening, extraction and drift detection, A/B and shadow routing, a decision
log and Prometheus metrics."""

from mlwarden.serve._app import create_app
from mlwarden.serve._config import (
    DecisionLogGuard,
    Deployment,
    DriftGuard,
    ExtractionGuard,
    ModelPolicy,
    OutputPolicy,
    RateLimit,
    Route,
)
from mlwarden.serve._decisions import DecisionLog
from mlwarden.serve._feedback_table import FeedbackTable, feedback_table
from mlwarden.serve._guarded import Guarded
from mlwarden.serve._keys import KeyStore
from mlwarden.serve._reproduce import reproduce_decision
from mlwarden.serve._server import SERVE_DB, build_server, close_server, open_decision_log

__all__ = [
    "SERVE_DB",
    "DecisionLogGuard",
    "Deployment",
    "DriftGuard",
    "ExtractionGuard",
    "Guarded",
    "ModelPolicy",
    "OutputPolicy",
    "RateLimit",
    "Route",
    "build_server",
    "close_server",
    "create_app",
    "open_decision_log",
]

__all__ += ["DecisionLog", "FeedbackTable", "KeyStore", "feedback_table", "reproduce_decision"]
