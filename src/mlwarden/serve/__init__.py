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
from mlwarden.serve._extraction import (
    BenignTraffic,
    BoundaryDetector,
    Detector,
    DetectorSuite,
    FeatureSpace,
    OffManifoldDetector,
    Pattern,
    PradaDetector,
    RarityDetector,
    Verdict,
)
from mlwarden.serve._feedback_table import FeedbackTable, feedback_table
from mlwarden.serve._guarded import Guarded
from mlwarden.serve._keys import KeyStore
from mlwarden.serve._reproduce import reproduce_decision
from mlwarden.serve._server import SERVE_DB, build_server, close_server, open_decision_log

__all__ = [
    "SERVE_DB",
    "BenignTraffic",
    "BoundaryDetector",
    "DecisionLog",
    "DecisionLogGuard",
    "Deployment",
    "Detector",
    "DetectorSuite",
    "DriftGuard",
    "ExtractionGuard",
    "FeatureSpace",
    "FeedbackTable",
    "Guarded",
    "KeyStore",
    "ModelPolicy",
    "OffManifoldDetector",
    "OutputPolicy",
    "Pattern",
    "PradaDetector",
    "RarityDetector",
    "RateLimit",
    "Route",
    "Verdict",
    "build_server",
    "close_server",
    "create_app",
    "feedback_table",
    "open_decision_log",
    "reproduce_decision",
]
