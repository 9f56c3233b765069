"""The guarded model server: a registered model behind authentication, rate limits, schema
checks, output hardening, extraction and drift detection, A/B and shadow routing, a decision
log and Prometheus metrics."""

from mlwarden.serve._app import create_app
from mlwarden.serve._config import (
    CoverageSettings,
    DecisionLogGuard,
    Deployment,
    DriftGuard,
    EfficacyPolicy,
    ExtractionGuard,
    ModelPolicy,
    OutputPolicy,
    RateLimit,
    Route,
    SharedState,
)
from mlwarden.serve._decisions import DecisionLog
from mlwarden.serve._efficacy import (
    Comparison,
    Difference,
    Efficacy,
    Interval,
    Outcome,
    compare,
    efficacy,
    wilson,
)
from mlwarden.serve._efficacy_monitor import default_positive, labelled_outcomes, record_labels
from mlwarden.serve._extraction import (
    BenignTraffic,
    BoundaryDetector,
    CoverageDetector,
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
from mlwarden.serve._redis_state import RevocationNotice
from mlwarden.serve._reproduce import reproduce_decision
from mlwarden.serve._server import SERVE_DB, build_server, close_server, open_decision_log

__all__ = [
    "SERVE_DB",
    "BenignTraffic",
    "BoundaryDetector",
    "Comparison",
    "CoverageDetector",
    "CoverageSettings",
    "DecisionLog",
    "DecisionLogGuard",
    "Deployment",
    "Detector",
    "DetectorSuite",
    "Difference",
    "DriftGuard",
    "Efficacy",
    "EfficacyPolicy",
    "ExtractionGuard",
    "FeatureSpace",
    "FeedbackTable",
    "Guarded",
    "Interval",
    "KeyStore",
    "ModelPolicy",
    "OffManifoldDetector",
    "Outcome",
    "OutputPolicy",
    "Pattern",
    "PradaDetector",
    "RarityDetector",
    "RateLimit",
    "RevocationNotice",
    "Route",
    "SharedState",
    "Verdict",
    "build_server",
    "close_server",
    "compare",
    "create_app",
    "default_positive",
    "efficacy",
    "feedback_table",
    "labelled_outcomes",
    "open_decision_log",
    "record_labels",
    "reproduce_decision",
    "wilson",
]
