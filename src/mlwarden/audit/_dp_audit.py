"""The DP audit check: how much privacy does the training procedure empirically lose?

Runs the one-run privacy audit of Steinke, Nasr & Jagielski (2023)
(:func:`mlwarden.attacks.privacy_audit`) on the target's training procedure:
``n_audit`` rows of the training split are each kept in training with probability 1/2, the
rest of the training split is always kept, and a fresh copy of the target's estimator
(``sklearn.base.clone``) is trained on them; the loss attack (or offline LiRA, whose reference
models train on the held-out split) then scores the audit rows, and the coin flips turn the
scores into a lower bound on epsilon that holds with probability ``confidence``. The gate reads
that bound: the procedure as configured must not be shown to lose more than
``max_empirical_epsilon``.

When the final step is a :class:`~mlwarden.models._dp.DPSGDClassifier`, the same audit is run
on its non-private twin (``epsilon=None``: same network, sampling, clipping, optimiser, no
noise), so the finding shows what DP buys: the twin's bound and accuracy beside the DP model's.
A bound above the model's claimed epsilon means the DP implementation or its accounting is
wrong (or a 1 - ``confidence`` accident) and is called out in the message.

The audit rows are real rows, not crafted canaries, so the bound reflects an average-case
attacker: far below the worst case a DP proof covers, and 0 for a well-generalising model.
``white_box=True`` runs the white-box audit instead (:func:`mlwarden.attacks.dp_sgd_canary_audit`:
``n_canaries`` Dirac gradient canaries inserted into DP-SGD's steps, every update observed),
which only a DPSGDClassifier supports and which separates DP from non-DP training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from mlwarden.audit._checks import CheckContext, CheckParams, Finding, register_check
from mlwarden.audit._membership import _cloneable, _unseen
from mlwarden.errors import ParameterError

if TYPE_CHECKING:
    from mlwarden.attacks import PrivacyAuditResult


class DpAudit(CheckParams):
    """Parameters of ``dp_audit``.

    ``max_empirical_epsilon`` is the gate: the audit's epsilon lower bound for the model as
    trained must not exceed it. ``n_audit`` training rows are audit rows (each in training with
    probability 1/2). ``n_reference`` reference models are trained for ``attack="lira"`` only.
    ``compare_non_private`` also audits the non-private twin of a DPSGDClassifier.
    ``white_box`` audits a DPSGDClassifier with ``n_canaries`` gradient canaries instead.
    """

    max_empirical_epsilon: float = Field(ge=0.0)
    n_audit: int = Field(default=500, ge=10)
    attack: Literal["loss", "lira"] = "loss"
    n_reference: int = Field(default=4, ge=1)
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    compare_non_private: bool = True
    white_box: bool = False
    n_canaries: int = Field(default=1000, ge=10)


def _dp_param_prefix(estimator: Any) -> str | None:
    """``set_params`` prefix of the final DPSGDClassifier (``"model__"``), None if none."""
    from mlwarden.models import DPSGDClassifier

    prefix, final = "", estimator
    while hasattr(final, "steps") and final.steps:
        name, final = final.steps[-1]
        prefix += f"{name}__"
    return prefix if isinstance(final, DPSGDClassifier) else None


def _describe(estimator: Any) -> str:
    final = estimator
    while hasattr(final, "steps") and final.steps:
        final = final.steps[-1][1]
    return type(final).__name__


def _claim(result: PrivacyAuditResult) -> str:
    if result.claimed_epsilon is None:
        return "none (not DP)"
    return f"{result.claimed_epsilon:.3g} (delta {result.bound.delta:.0e})"


def _ci(low_high: tuple[float, float]) -> str:
    return f"[{low_high[0]:.3f}, {low_high[1]:.3f}]"


def _row(name: str, r: PrivacyAuditResult) -> list[Any]:
    return [
        name,
        _claim(r),
        f"{r.epsilon_lower_bound:.3f}",
        f"{r.auc:.3f} {_ci(r.auc_ci)}",
        f"{r.tpr_at_fpr[0.01]:.4f}",
        f"{r.tpr_at_fpr[0.001]:.4f}",
        "-" if r.test_accuracy is None else f"{r.test_accuracy:.4f}",
        f"{r.wall_time_s:.1f} s",
    ]


def _summary(r: PrivacyAuditResult) -> dict[str, Any]:
    return {
        "claimed_epsilon": r.claimed_epsilon,
        "delta": r.bound.delta,
        "empirical_epsilon": r.epsilon_lower_bound,
        "k_pos": r.bound.k_pos,
        "k_neg": r.bound.k_neg,
        "n_guesses": r.bound.n_guesses,
        "n_correct": r.bound.n_correct,
        "auc": r.auc,
        "auc_ci": list(r.auc_ci),
        "tpr_at_fpr": {f"{k:g}": v for k, v in r.tpr_at_fpr.items()},
        "test_accuracy": r.test_accuracy,
        "n_train": r.n_train,
        "n_included": r.n_included,
        "wall_time_s": r.wall_time_s,
    }


_NOTE_ROWS = (
    "Steinke, Nasr & Jagielski (2023): each audit row is trained on with probability 1/2 and "
    "one model is trained; the bound holds with the stated probability over those coin flips. "
    "Audit rows are real rows, not worst-case canaries, so the bound is far below what a DP "
    "proof covers; a bound above the claimed epsilon means the claim is broken."
)
_NOTE_WHITE_BOX = (
    "Nasr et al. (2023), Steinke et al. (2023), white box: each Dirac gradient canary joins "
    "the clipped sum with probability 1/2 (then Poisson-sampled like a row), every update is "
    "observed and one model is trained; the bound holds with the stated probability over the "
    "coin flips. A bound above the claimed epsilon means the claim is broken."
)


def _not_measured(params: DpAudit, why: str) -> Finding:
    return Finding(
        check="dp_audit",
        metric="empirical_epsilon",
        value=None,
        threshold=params.max_empirical_epsilon,
        comparison="<=",
        passed=False,
        message=f"not measured: {why}",
        details={},
    )


@register_check("dp_audit", DpAudit)
def dp_audit(params: DpAudit, ctx: CheckContext) -> Finding:
    """The one-run audit's epsilon lower bound for the training procedure must stay at most a cap.

    Audit rows come from the training split, the other training rows are always trained on,
    and the held-out split gives test accuracy (and LiRA's population). The model is retrained
    (once per audited variant, plus reference models for LiRA), never queried itself.
    """
    from sklearn.base import clone

    from mlwarden.attacks import dp_sgd_canary_audit, privacy_audit

    metric = "empirical_epsilon"
    estimator = _cloneable(ctx.model)
    prefix = None if estimator is None else _dp_param_prefix(estimator)
    if estimator is None:
        return _not_measured(
            params,
            "the privacy audit retrains the model, which needs a scikit-learn estimator "
            "(this model offers none)",
        )
    if params.white_box and prefix is None:
        return _not_measured(
            params,
            "the white-box audit inserts gradient canaries into DP-SGD, which needs a "
            "DPSGDClassifier (or a Pipeline ending in one)",
        )

    n_audit = params.n_canaries if params.white_box else min(params.n_audit, len(ctx.X_train))
    X_held, y_held, _ = _unseen(ctx)
    held_out = (X_held.reset_index(drop=True), y_held.reset_index(drop=True))

    def audit(model: Any, delta: float | None) -> PrivacyAuditResult:
        if params.white_box:
            return dp_sgd_canary_audit(
                model,
                ctx.X_train.reset_index(drop=True),
                ctx.y_train.reset_index(drop=True),
                n_canaries=params.n_canaries,
                test=held_out if len(y_held) else None,
                delta=delta,
                confidence=params.confidence,
                seed=ctx.seed,
            )
        return privacy_audit(
            lambda: clone(model),
            ctx.X_train.reset_index(drop=True),
            ctx.y_train.reset_index(drop=True),
            n_audit=n_audit,
            attack=params.attack,
            n_train=len(ctx.X_train) - n_audit,
            n_reference=params.n_reference,
            population=held_out if params.attack == "lira" else None,
            test=held_out if len(y_held) else None,
            delta=delta,
            confidence=params.confidence,
            seed=ctx.seed,
        )

    try:
        target = audit(estimator, None)  # delta: the model's own (0 if it claims none)
    except ParameterError as exc:  # e.g. more canaries than the network has parameters
        if not params.white_box:
            raise
        return _not_measured(params, str(exc))
    results = [("as trained: " + _describe(estimator), target)]
    twin = None
    if params.compare_non_private and prefix is not None:
        twin_model = clone(estimator).set_params(
            **{f"{prefix}epsilon": None, f"{prefix}noise_multiplier": None}
        )
        twin = audit(twin_model, target.bound.delta)  # the same null hypothesis as the target
        results.append(("non-private twin (epsilon=None)", twin))

    value = target.epsilon_lower_bound
    passed = value <= params.max_empirical_epsilon
    claimed = "none (not DP)" if target.claimed_epsilon is None else f"{target.claimed_epsilon:.3g}"
    message = (
        f"empirical epsilon >= {value:.2f} at {params.confidence:.0%} (claimed {claimed}; "
        f"{'<=' if passed else '>'} {params.max_empirical_epsilon:g} allowed)"
    )
    if twin is not None:
        message += f"; non-private twin: >= {twin.epsilon_lower_bound:.2f}"
    exceeds = target.claimed_epsilon is not None and value > target.claimed_epsilon
    if exceeds:
        message += (
            "; the bound EXCEEDS the claimed epsilon: the DP implementation or its accounting "
            f"is wrong (or a {1 - params.confidence:.0%} accident)"
        )
    return Finding(
        check="dp_audit",
        metric=metric,
        value=value,
        threshold=params.max_empirical_epsilon,
        comparison="<=",
        passed=passed,
        message=message,
        details={
            "audits": {name: _summary(r) for name, r in results},
            "exceeds_claim": exceeds,
            "attack": target.variant,
            "n_audit": n_audit,
            "confidence": params.confidence,
            "tables": [
                {
                    "title": f"one-run privacy audit ({target.variant} attack, {n_audit} "
                    f"{'gradient canaries' if params.white_box else 'audit rows'}, "
                    f"{target.n_train} training rows in the target)",
                    "columns": [
                        "model",
                        "claimed epsilon",
                        f"empirical epsilon (lower bound, {params.confidence:.0%})",
                        "AUC (95% CI)",
                        "TPR at 1% FPR",
                        "TPR at 0.1% FPR",
                        "test accuracy",
                        "time",
                    ],
                    "rows": [_row(name, r) for name, r in results],
                    "note": _NOTE_WHITE_BOX if params.white_box else _NOTE_ROWS,
                }
            ],
            "curve": {
                "series": [
                    {
                        "label": f"{name} (AUC {r.auc:.3f})",
                        "x": [f for f, _ in r.roc],
                        "y": [t for _, t in r.roc],
                    }
                    for name, r in results
                ],
                "xlabel": "false positive rate",
                "ylabel": "true positive rate",
                "xscale": "log",
                "yscale": "log",
                "diagonal": True,
            },
        },
    )
