"""Attacks: pure functions of (model adapter, data, budget) that return pydantic results."""

from mlwarden.attacks._extraction import (
    ExtractedLinearModel,
    ExtractionResult,
    OneHotDesign,
    extract_logistic,
    extract_logistic_pipeline,
    fidelity,
)
from mlwarden.attacks._gradient import (
    GradientAttackResult,
    RobustnessCurve,
    RobustnessPoint,
    fgsm,
    pgd,
    robust_accuracy,
)
from mlwarden.attacks._hopskipjump import HopSkipJumpResult, hop_skip_jump
from mlwarden.attacks._membership import (
    MembershipMetrics,
    MembershipResult,
    lira,
    logit_confidence,
    loss_threshold_attack,
    membership_metrics,
)
from mlwarden.attacks._result import AttackResult
from mlwarden.attacks._tabular import (
    FeatureConstraint,
    TabularEvasionResult,
    ThreatModel,
    bundled_threat_model,
    tabular_evasion,
)
from mlwarden.attacks._tree_extraction import (
    CategoricalFeature,
    ContinuousFeature,
    ExtractedLeaf,
    ExtractedTree,
    LeafOracle,
    TreeExtractionResult,
    TreeSchema,
    extract_tree,
)

__all__ = [
    "AttackResult",
    "CategoricalFeature",
    "ContinuousFeature",
    "ExtractedLeaf",
    "ExtractedLinearModel",
    "ExtractedTree",
    "ExtractionResult",
    "FeatureConstraint",
    "GradientAttackResult",
    "HopSkipJumpResult",
    "LeafOracle",
    "MembershipMetrics",
    "MembershipResult",
    "OneHotDesign",
    "RobustnessCurve",
    "RobustnessPoint",
    "TabularEvasionResult",
    "ThreatModel",
    "TreeExtractionResult",
    "TreeSchema",
    "bundled_threat_model",
    "extract_logistic",
    "extract_logistic_pipeline",
    "extract_tree",
    "fgsm",
    "fidelity",
    "hop_skip_jump",
    "lira",
    "logit_confidence",
    "loss_threshold_attack",
    "membership_metrics",
    "pgd",
    "robust_accuracy",
    "tabular_evasion",
]
