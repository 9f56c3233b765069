"""Attacks: pure functions of (model adapter, data, budget) that return pydantic results."""

from typing import TYPE_CHECKING, Any

from mlwarden.attacks._apgd import ApgdLoss, apgd, apgd_checkpoints, dlr_loss
from mlwarden.attacks._autoattack import autoattack
from mlwarden.attacks._canary import (
    Canary,
    CanaryExposure,
    CanaryExposureResult,
    CandidateSpace,
    canary_exposure,
    exposure_by_rank,
    exposure_by_skew_normal,
    insert_canaries,
    measure_canaries,
    random_canaries,
)
from mlwarden.attacks._distillation import (
    DEFAULT_BUDGETS,
    DistillationPoint,
    DistillationResult,
    QuerySource,
    Surrogate,
    TabularSurrogate,
    extract_distillation,
)
from mlwarden.attacks._dp_audit import PrivacyAuditResult, privacy_audit
from mlwarden.attacks._dp_bounds import EpsilonLowerBound, epsilon_from_roc, epsilon_lower_bound
from mlwarden.attacks._dp_canaries import dp_sgd_canary_audit, gaussian_step_llr
from mlwarden.attacks._dp_fdp import epsilon_lower_bound_gdp, gaussian_mu
from mlwarden.attacks._extraction import (
    ExtractedLinearModel,
    ExtractionResult,
    OneHotDesign,
    extract_logistic,
    extract_logistic_pipeline,
    fidelity,
)
from mlwarden.attacks._gradient import GradientAttackResult, fgsm, pgd
from mlwarden.attacks._hopskipjump import HopSkipJumpResult, hop_skip_jump
from mlwarden.attacks._label_only import (
    LabelOnlyExtractionResult,
    extract_linear_labels,
    extract_linear_labels_pipeline,
)
from mlwarden.attacks._membership import (
    MembershipResult,
    lira,
    logit_confidence,
    loss_threshold_attack,
)
from mlwarden.attacks._membership_metrics import FPR_LEVELS, MembershipMetrics, membership_metrics
from mlwarden.attacks._noise import uniform_noise
from mlwarden.attacks._output_hardening_cost import (
    ALL_MODES,
    FidelityCost,
    HardeningAttack,
    HardeningCostRow,
    HardeningCostTable,
    hardening_cost,
)
from mlwarden.attacks._result import AttackResult
from mlwarden.attacks._rmia import offline_marginal, pairwise_lr_scores, rmia
from mlwarden.attacks._robust_accuracy import (
    EvasionAttack,
    RobustnessCurve,
    RobustnessPoint,
    robust_accuracy,
)
from mlwarden.attacks._square import square
from mlwarden.attacks._square_linf import square_p
from mlwarden.attacks._tabular import TabularEvasionResult, tabular_evasion
from mlwarden.attacks._threat_draft import draft_threat_model, draft_threat_model_yaml
from mlwarden.attacks._threat_model import FeatureConstraint, ThreatModel, bundled_threat_model
from mlwarden.attacks._tree_extraction import (
    ExtractedLeaf,
    ExtractedTree,
    TreeExtractionResult,
    extract_tree,
)
from mlwarden.attacks._tree_oracle import (
    CategoricalFeature,
    ContinuousFeature,
    LeafOracle,
    TreeSchema,
)

__all__ = [
    "DEFAULT_BUDGETS",
    "ApgdLoss",
    "AttackResult",
    "Canary",
    "CanaryExposure",
    "CanaryExposureResult",
    "CandidateSpace",
    "CategoricalFeature",
    "ContinuousFeature",
    "DistillationPoint",
    "DistillationResult",
    "EpsilonLowerBound",
    "EvasionAttack",
    "ExtractedLeaf",
    "ExtractedLinearModel",
    "ExtractedTree",
    "ExtractionResult",
    "FeatureConstraint",
    "FidelityCost",
    "GradientAttackResult",
    "HardeningAttack",
    "HardeningCostRow",
    "HardeningCostTable",
    "HopSkipJumpResult",
    "LabelOnlyExtractionResult",
    "LeafOracle",
    "MembershipMetrics",
    "MembershipResult",
    "OneHotDesign",
    "PrivacyAuditResult",
    "QuerySource",
    "RobustnessCurve",
    "RobustnessPoint",
    "SlowdownResult",
    "Surrogate",
    "TabularEvasionResult",
    "TabularSurrogate",
    "ThreatModel",
    "TreeExtractionResult",
    "TreeSchema",
    "apgd",
    "apgd_checkpoints",
    "autoattack",
    "bundled_threat_model",
    "canary_exposure",
    "deepsloth",
    "dlr_loss",
    "dp_sgd_canary_audit",
    "draft_threat_model",
    "draft_threat_model_yaml",
    "epsilon_from_roc",
    "epsilon_lower_bound",
    "epsilon_lower_bound_gdp",
    "exposure_by_rank",
    "exposure_by_skew_normal",
    "extract_distillation",
    "extract_linear_labels",
    "extract_linear_labels_pipeline",
    "extract_logistic",
    "extract_logistic_pipeline",
    "extract_tree",
    "fgsm",
    "fidelity",
    "gaussian_mu",
    "gaussian_step_llr",
    "hardening_cost",
    "hop_skip_jump",
    "insert_canaries",
    "lira",
    "logit_confidence",
    "loss_threshold_attack",
    "measure_canaries",
    "membership_metrics",
    "offline_marginal",
    "pairwise_lr_scores",
    "pgd",
    "privacy_audit",
    "random_canaries",
    "random_slowdown",
    "rmia",
    "robust_accuracy",
    "slowdown_loss",
    "square",
    "square_p",
    "tabular_evasion",
    "transfer_deepsloth",
    "uniform_noise",
    "universal_deepsloth",
]

if TYPE_CHECKING:  # the lazy names below, for type checkers
    from mlwarden.attacks._deepsloth import (
        SlowdownResult,
        deepsloth,
        random_slowdown,
        slowdown_loss,
        transfer_deepsloth,
        universal_deepsloth,
    )

# DeepSloth needs torch: imported on first use.
_SLOWDOWN = {
    "SlowdownResult", "deepsloth", "random_slowdown", "slowdown_loss", "transfer_deepsloth",
    "universal_deepsloth",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _SLOWDOWN:
        from mlwarden.attacks import _deepsloth

        return getattr(_deepsloth, name)
    raise AttributeError(f"module 'mlwarden.attacks' has no attribute {name!r}")


__all__ += ["ALL_MODES", "FPR_LEVELS"]
