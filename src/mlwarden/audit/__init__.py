"""Audit: a registry of checks run on one model, findings, and the gate that applies the policy."""

from mlwarden.audit._canary import CanaryCheck, canary_check
from mlwarden.audit._checks import (
    CHECKS,
    CheckContext,
    CheckDef,
    CheckParams,
    Finding,
    register_check,
    run_check,
)
from mlwarden.audit._defaults import CHECK_GROUPS, DEFAULT_GROUPS
from mlwarden.audit._dp_audit import DpAudit
from mlwarden.audit._evasion import DecisionBoundary, Evasion, evasion, load_threat_model
from mlwarden.audit._explain import Explainer, Explanation
from mlwarden.audit._extraction import Extraction
from mlwarden.audit._fairness import DemographicParity, EqualOpportunity, GroupFairness
from mlwarden.audit._gate import GateMode, GateResult, OnInconclusive, apply_gate
from mlwarden.audit._membership import Membership, TprAtFpr
from mlwarden.audit._metrics import MetricName, Metrics, classification_metrics
from mlwarden.audit._overconfidence import (
    OutOfDistributionConfidence,
    foreign_rows,
)
from mlwarden.audit._performance import GeneralizationGap, PerformanceFloor
from mlwarden.audit._robustness import RobustAccuracy
from mlwarden.audit._shortcuts import (
    AttributionShare,
    FeatureImportance,
    IrrelevantFeatures,
    permutation_importance,
)
from mlwarden.audit._slowdown import SlowdownCheck, slowdown_check
from mlwarden.audit._stats import Verdict, bootstrap_interval, decide, proportion_interval

__all__ = [
    "CHECKS",
    "CHECK_GROUPS",
    "DEFAULT_GROUPS",
    "AttributionShare",
    "CanaryCheck",
    "CheckContext",
    "CheckDef",
    "CheckParams",
    "DecisionBoundary",
    "DemographicParity",
    "DpAudit",
    "EqualOpportunity",
    "Evasion",
    "Explainer",
    "Explanation",
    "Extraction",
    "FeatureImportance",
    "Finding",
    "GateMode",
    "GateResult",
    "GeneralizationGap",
    "GroupFairness",
    "IrrelevantFeatures",
    "Membership",
    "MetricName",
    "Metrics",
    "OnInconclusive",
    "OutOfDistributionConfidence",
    "PerformanceFloor",
    "RobustAccuracy",
    "TprAtFpr",
    "Verdict",
    "apply_gate",
    "bootstrap_interval",
    "canary_check",
    "classification_metrics",
    "decide",
    "foreign_rows",
    "permutation_importance",
    "proportion_interval",
    "register_check",
    "run_check",
]

__all__ += ["SlowdownCheck", "evasion", "load_threat_model", "slowdown_check"]
