"""Shortcut features (the "snow detector"): does the model look at the right things?

A model that learned a shortcut (a column that tracks the label in the training data only, such
as a ticket id or the snow behind the wolves in Ribeiro et al. 2016) scores well until the
shortcut breaks. Two checks catch it: declared-irrelevant features must not move predictions,
and no single feature may carry most of the model's attribution (permutation importance,
Breiman 2001; Fisher, Rudin, Dominici 2019).
"""

from __future__ import annotations

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
from mlwarden.audit._stats import decide, proportion_interval

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlwarden.models import ModelAdapter


class FeatureImportance(BaseModel):
    """Mean and spread of the score drop when one feature's values are shuffled."""

    model_config = ConfigDict(defer_build=True)

    feature: str
    importance: float
    std: float


def _score(
    model: ModelAdapter, X: pd.DataFrame, y: np.ndarray, metric: str, positive: Any
) -> float:
    import numpy as np

    proba = model.predict_proba(X)
    classes = model.classes_
    if metric == "accuracy":
        return float(np.mean(classes[np.argmax(proba, axis=1)] == y))
    from sklearn.metrics import roc_auc_score

    if len(classes) == 2:
        pos = positive if positive is not None else classes[1]
        column = list(classes).index(pos)
        return float(roc_auc_score(y == pos, proba[:, column]))
    return float(roc_auc_score(y, proba, multi_class="ovr", labels=classes))


def permutation_importance(
    model: ModelAdapter,
    X: pd.DataFrame,
    y: Any,
    *,
    metric: Literal["accuracy", "roc_auc"] = "roc_auc",
    n_repeats: int = 3,
    positive: Any = None,
    seed: int = 0,
) -> list[FeatureImportance]:
    """Permutation importance through the adapter, so every query is counted.

    Each feature's values are shuffled ``n_repeats`` times and the drop in ``metric`` averaged;
    scikit-learn's ``permutation_importance`` does the same but calls the estimator directly.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.asarray(y)
    base = _score(model, X, labels, metric, positive)
    found = []
    for feature in X.columns:
        drops = []
        for _ in range(n_repeats):
            shuffled = X.copy()
            shuffled[feature] = rng.permutation(shuffled[feature].to_numpy())
            drops.append(base - _score(model, shuffled, labels, metric, positive))
        found.append(
            FeatureImportance(
                feature=str(feature), importance=float(np.mean(drops)), std=float(np.std(drops))
            )
        )
    return sorted(found, key=lambda f: f.importance, reverse=True)


def _sample(X: pd.DataFrame, y: pd.Series, rows: int, seed: int) -> tuple[pd.DataFrame, Any]:
    if len(X) <= rows:
        return X, y.to_numpy()
    chosen = X.sample(n=rows, random_state=seed).index
    return X.loc[chosen], y.loc[chosen].to_numpy()


class IrrelevantFeatures(CheckParams):
    """Parameters of ``irrelevant_features``."""

    features: list[str] = Field(min_length=1)
    max_flip_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    rows: int = Field(default=2000, ge=10)


@register_check("irrelevant_features", IrrelevantFeatures)
def irrelevant_features(params: IrrelevantFeatures, ctx: CheckContext) -> Finding:
    """Shuffling a feature the spec declares irrelevant must not change the model's decisions.

    Measured on the held-out split: the share of rows whose predicted class changes when the
    declared features' values are shuffled across rows (their distribution kept, their link
    to each row broken). A model that flips decisions has learned a shortcut.
    """
    import numpy as np

    absent = [f for f in params.features if f not in ctx.X_test.columns]
    if absent:
        return Finding(
            check="irrelevant_features", metric="decision_flip_rate", value=None,
            threshold=params.max_flip_rate, comparison="<=", passed=False,
            message=f"not measured: declared feature(s) {absent} are not model inputs",
        )  # fmt: skip
    X, _ = _sample(ctx.X_test, ctx.y_test, params.rows, ctx.seed)
    rng = np.random.default_rng(ctx.seed)
    shuffled = X.copy()
    for feature in params.features:
        shuffled[feature] = rng.permutation(shuffled[feature].to_numpy())
    flipped = ctx.model.predict(X) != ctx.model.predict(shuffled)
    rate = float(np.mean(flipped))
    interval = proportion_interval(int(flipped.sum()), len(X))
    verdict = decide(rate, interval, params.max_flip_rate, "<=")
    return Finding(
        check="irrelevant_features",
        metric="decision_flip_rate",
        value=rate,
        threshold=params.max_flip_rate,
        comparison="<=",
        verdict=verdict,
        n=len(X),
        interval=interval,
        message=f"shuffling {', '.join(params.features)} changed {rate:.2%}{span(interval)} of "
        f"{len(X):,} decisions: {VERDICT_WORDS[verdict]} {params.max_flip_rate:.2%} allowed",
        details={"rows": len(X), "flipped": int(flipped.sum())},
    )


class AttributionShare(CheckParams):
    """Parameters of ``attribution_share``."""

    max_share: float = Field(ge=0.0, le=1.0)
    metric: Literal["accuracy", "roc_auc"] = "roc_auc"
    split: Literal["train", "test"] = "train"
    n_repeats: int = Field(default=3, ge=1, le=20)
    rows: int = Field(default=2000, ge=10)


@register_check("attribution_share", AttributionShare)
def attribution_share(params: AttributionShare, ctx: CheckContext) -> Finding:
    """No single feature may carry more than ``max_share`` of the model's attribution.

    Attribution is permutation importance (score drop when a feature is shuffled); the share is
    the top feature's positive importance over the sum of positive importances. Measured on the
    training split by default: that is where a shortcut holds, so that is where the model's
    reliance on it shows.
    """
    source = (ctx.X_train, ctx.y_train) if params.split == "train" else (ctx.X_test, ctx.y_test)
    X, y = _sample(source[0], source[1], params.rows, ctx.seed)
    found = permutation_importance(
        ctx.model, X, y, metric=params.metric, n_repeats=params.n_repeats,
        positive=ctx.positive, seed=ctx.seed,
    )  # fmt: skip
    positive_total = sum(max(f.importance, 0.0) for f in found)
    top = found[0]
    share = max(top.importance, 0.0) / positive_total if positive_total > 0 else 0.0
    passed = share <= params.max_share
    return Finding(
        check="attribution_share",
        metric="top_feature_share",
        value=share,
        threshold=params.max_share,
        comparison="<=",
        passed=passed,
        n=len(X),
        message=f"{top.feature} carries {share:.1%} of the attribution "
        f"({'<=' if passed else '>'} {params.max_share:.0%} allowed)",
        details={
            "importances": [f.model_dump() for f in found[:15]],
            "split": params.split,
            "bars": {
                "labels": [f.feature for f in found[:15]],
                "values": [f.importance for f in found[:15]],
                "xlabel": f"permutation importance ({params.metric} drop, {params.split} split)",
            },
        },
    )
