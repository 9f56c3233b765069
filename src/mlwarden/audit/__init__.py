"""Audit: a registry of checks run on one model, findings, and the gate that applies the policy."""

from mlwarden.audit._checks import (
    CHECKS,
    CheckContext,
    CheckDef,
    CheckParams,
    Finding,
    register_check,
    run_check,
)
from mlwarden.audit._fairness import DemographicParity, EqualOpportunity, GroupFairness
from mlwarden.audit._gate import GateMode, GateResult, apply_gate
from mlwarden.audit._metrics import MetricName, Metrics, classification_metrics

__all__ = [
    "CHECKS",
    "CheckContext",
    "CheckDef",
    "CheckParams",
    "DemographicParity",
    "EqualOpportunity",
    "Finding",
    "GateMode",
    "GateResult",
    "GroupFairness",
    "MetricName",
    "Metrics",
    "apply_gate",
    "classification_metrics",
    "register_check",
    "run_check",
]
