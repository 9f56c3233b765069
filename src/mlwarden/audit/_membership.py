"""The membership check: can an attacker tell the model's training rows from rows it never saw?

Runs the loss-threshold baseline and, when reference models can be trained (the target is a
scikit-learn estimator that can be cloned), RMIA (the default) or LiRA, offline or online, on
members drawn from the training split and non-members from the held-out split. The other half
of the held-out split is the attacker's population data: disjoint from the training set, as
reference models require. The
gate reads the highest TPR at the policy's FPR over the attacks run: a model is only as private
as the strongest attack measured says.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlwarden.audit._checks import (
    VERDICT_WORDS,
    CheckContext,
    CheckParams,
    Finding,
    register_check,
    span,
)
from mlwarden.audit._stats import Verdict, decide

#: A TPR at FPR f is judged only with at least this many expected false positives, i.e.
#: ``MIN_FALSE_POSITIVES / f`` non-members: with fewer, the rate is set by one or two rows.
MIN_FALSE_POSITIVES = 10

_NAMES = {"rmia": "RMIA", "lira": "LiRA"}

if TYPE_CHECKING:
    import pandas as pd

    from mlwarden.attacks import MembershipResult


class TprAtFpr(BaseModel):
    """An operating point: the attack may reach at most ``tpr`` at false-positive rate ``fpr``."""

    model_config = ConfigDict(extra="forbid")

    fpr: float = Field(gt=0.0, lt=1.0)
    tpr: float = Field(ge=0.0, le=1.0)


class Membership(CheckParams):
    """Parameters of ``membership``.

    ``attack`` picks the reference-model attack run beside the loss attack: ``rmia``
    (Zarifzadeh et al. 2024, the default), ``lira`` (Carlini et al. 2022) or ``loss`` alone.
    ``n_reference`` reference models of the target's kind are trained for it; 0 runs only the
    loss attack. The default, RMIA with 2, is the cheapest attack that reached LiRA-online with
    64 reference models in ``bench/membership.py`` (TPR at 0.1% and 1% FPR on Adult); LiRA
    needs 64 and more. ``rows`` caps members and non-members each.
    """

    max_tpr_at_fpr: TprAtFpr
    attack: Literal["rmia", "lira", "loss"] = "rmia"
    n_reference: int = Field(default=2, ge=0)
    online: bool = False
    rows: int = Field(default=1000, ge=10)
    n_bootstrap: int = Field(default=200, ge=1)


def _sample(n: int, k: int, seed: int) -> Any:
    import numpy as np

    return np.sort(np.random.default_rng(seed).permutation(n)[: min(n, k)])


def _unseen(ctx: CheckContext) -> tuple[pd.DataFrame, pd.Series, int]:
    """Held-out rows that are not copies of a training row (label included).

    A copy of a member is a member to the model, so counting it as a non-member, or letting a
    reference model train on it, would understate the attack; and a held-out table passed in
    from outside (``audit --data``) may hold the whole data set, training rows and all.
    """
    import pandas as pd

    def keys(X: pd.DataFrame, y: pd.Series) -> pd.Series:
        frame = X.reset_index(drop=True).assign(_label=y.to_numpy())
        return pd.util.hash_pandas_object(frame, index=False)

    seen = set(keys(ctx.X_train, ctx.y_train).to_numpy().tolist())
    fresh = ~keys(ctx.X_test, ctx.y_test).isin(seen).to_numpy()
    return ctx.X_test[fresh], ctx.y_test[fresh], int((~fresh).sum())


def _cloneable(model: Any) -> Any | None:
    """The target's scikit-learn estimator, if reference models can be made like it."""
    estimator = getattr(model, "estimator", None)
    if estimator is None:
        return None
    try:
        from sklearn.base import clone

        clone(estimator)
    except (TypeError, RuntimeError, ValueError):
        return None
    return estimator


def _table(results: list[MembershipResult]) -> dict[str, Any]:
    def ci(low_high: tuple[float, float]) -> str:
        return f"[{low_high[0]:.4f}, {low_high[1]:.4f}]"

    rows = [
        [
            r.variant, r.n_reference, f"{r.auc:.4f} {ci(r.auc_ci)}",
            *(f"{r.tpr_at_fpr[f]:.4f} {ci(r.tpr_at_fpr_ci[f])}" for f in (0.01, 0.001)),
            f"{r.wall_time_s:.1f} s",
        ]
        for r in results
    ]  # fmt: skip
    return {
        "title": "membership inference attacks (95% bootstrap intervals)",
        "columns": [
            "attack",
            "reference models",
            "AUC",
            "TPR at 1% FPR",
            "TPR at 0.1% FPR",
            "time",
        ],
        "rows": rows,
    }


@register_check("membership", Membership)
def membership(params: Membership, ctx: CheckContext) -> Finding:
    """The membership attacks' TPR at the policy's FPR must stay at most the allowed TPR.

    Members are training rows and non-members held-out rows, ``rows`` of each at most; half of
    the held-out rows are kept back as the population the reference models train on (and
    RMIA draws its comparison rows from).
    """
    import numpy as np

    from mlwarden.attacks import FPR_LEVELS, lira, loss_threshold_attack, rmia

    point = params.max_tpr_at_fpr
    metric = f"tpr_at_fpr_{point.fpr:g}"
    X_test, y_test, duplicates = _unseen(ctx)
    held_out = np.random.default_rng([ctx.seed, 7]).permutation(len(X_test))
    half = len(held_out) // 2
    out_idx, population_idx = np.sort(held_out[:half]), np.sort(held_out[half:])
    out_idx = out_idx[_sample(len(out_idx), params.rows, ctx.seed + 1)]
    in_idx = _sample(len(ctx.X_train), params.rows, ctx.seed)
    X_in, y_in = ctx.X_train.iloc[in_idx], ctx.y_train.iloc[in_idx]
    X_out, y_out = X_test.iloc[out_idx], y_test.iloc[out_idx]

    levels = sorted({*FPR_LEVELS, point.fpr})
    results = [loss_threshold_attack(
        ctx.model, X_in, y_in, X_out, y_out, n_bootstrap=params.n_bootstrap, seed=ctx.seed,
        fpr_levels=levels,
    )]  # fmt: skip
    skipped = None
    estimator = _cloneable(ctx.model)
    if params.attack != "loss" and params.n_reference > 0:
        if estimator is None:
            skipped = (
                f"{_NAMES[params.attack]} needs reference models like the target: "
                "a scikit-learn estimator"
            )
        else:
            import pandas as pd
            from sklearn.base import clone

            X_target = pd.concat([X_in, X_out], ignore_index=True)
            y_target = pd.concat([y_in, y_out], ignore_index=True)
            is_member = np.r_[np.ones(len(X_in), bool), np.zeros(len(X_out), bool)]
            reference_attack = rmia if params.attack == "rmia" else lira
            results.append(reference_attack(
                ctx.model, X_target, y_target, is_member,
                X_test.iloc[population_idx].reset_index(drop=True),
                y_test.iloc[population_idx].reset_index(drop=True),
                lambda: clone(estimator), n_reference=params.n_reference,
                online=params.online, n_bootstrap=params.n_bootstrap, seed=ctx.seed,
                fpr_levels=levels,
            ))  # fmt: skip
    n_out = len(X_out)
    failed = [r.variant for r in results if r.auc_ci[1] < 0.5]
    valid = [r for r in results if r.variant not in failed]
    # point.fpr is one of the levels every attack measured, with its bootstrap interval
    best = max(valid, key=lambda r: r.tpr_at_fpr[point.fpr], default=None)
    strongest = best.variant if best is not None else None
    value = best.tpr_at_fpr[point.fpr] if best is not None else None
    interval = best.tpr_at_fpr_ci[point.fpr] if best is not None else None
    needed = math.ceil(MIN_FALSE_POSITIVES / point.fpr)
    notes = []
    if failed:
        notes.append(
            f"{', '.join(failed)} scored below chance (AUC interval under 0.5): a failed "
            "attack, not evidence either way"
        )
    verdict: Verdict = "inconclusive"
    if strongest is not None:
        verdict = decide(value, interval, point.tpr, "<=")
    if n_out < needed and verdict != "fail":
        # Too few non-members to pin the rate at this FPR: a leak far above the limit still
        # shows (the interval's lower end clears it), but a pass cannot be shown.
        verdict = "inconclusive"
        notes.append(
            f"a TPR at FPR {point.fpr:g} needs at least {needed:,} non-members "
            f"({MIN_FALSE_POSITIVES} false positives at that rate) to pass; there were {n_out:,}"
        )
    head = (
        "no attack did better than chance"
        if strongest is None
        else f"{strongest} reaches TPR {value:.4f}{span(interval)} at FPR {point.fpr:g} "
        f"({len(X_in):,} members, {n_out:,} non-members)"
    )
    return Finding(
        check="membership",
        metric=metric,
        value=value,
        threshold=point.tpr,
        comparison="<=",
        verdict=verdict,
        n=n_out,
        interval=interval,
        message=f"{head}: {VERDICT_WORDS[verdict]} {point.tpr:g} allowed"
        + "".join(f"; {note}" for note in notes),
        details={
            "attacks": {
                r.variant: {
                    "auc": r.auc,
                    "auc_ci": list(r.auc_ci),
                    "tpr_at_fpr": {f"{k:g}": v for k, v in r.tpr_at_fpr.items()},
                    "tpr_at_fpr_ci": {f"{k:g}": list(v) for k, v in r.tpr_at_fpr_ci.items()},
                    "n_reference": r.n_reference,
                    "wall_time_s": r.wall_time_s,
                }
                for r in results
            },
            "tables": [_table(results)],
            "members": len(X_in),
            "non_members": n_out,
            "population": len(population_idx),
            "held_out_duplicates_of_members": duplicates,
            "lira_skipped": skipped,
            "failed_attacks": failed,
            "curve": {
                "series": [
                    {
                        "label": f"{r.variant} (AUC {r.auc:.3f})",
                        "x": [f for f, _ in r.roc],
                        "y": [t for _, t in r.roc],
                    }
                    for r in results
                ],
                "xlabel": "false positive rate",
                "ylabel": "true positive rate",
                "xscale": "log",
                "yscale": "log",
                "diagonal": True,
            },
        },
    )
