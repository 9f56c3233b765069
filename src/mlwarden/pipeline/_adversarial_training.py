"""Adversarial training for tabular models: retrain with the evasions the attack finds.

Each round attacks a sample of the attacker's own training rows (those not of the target class
that the model classifies correctly) with the constrained tabular evasion under the spec's
threat model, adds every evasion found back to the training data with its true label, and
refits the chosen estimator. It is the tabular counterpart of PGD adversarial training (Madry
et al. 2018), as in Kireev, Kulynych, Troncoso (2023) for discrete features.

Hardening trades clean accuracy for robustness, so when held-out rows are given the same rows
are measured before and after: clean metrics, and evasion success as the evasion check counts
it. The held-out rows are only measured on, never trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    import pandas as pd

    from mlwarden.attacks import TabularEvasionResult

#: The clean metrics compared before and after hardening, in the order they are shown.
CLEAN_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
#: A clean metric that drops by more than this is reported as a cost of hardening.
COST_TOLERANCE = 0.001


class HardeningRound(BaseModel):
    """What one round of adversarial training found and added.

    ``attacked`` counts the sampled rows the model classified correctly (the ones an attacker
    has to flip); ``already_target`` the sampled rows it already gave the attacker's class
    (model error, not evasion); ``success`` is ``evaded / attacked``.
    """

    round: int
    attacked: int
    evaded: int
    success: float
    added_rows: int
    already_target: int = 0


class HeldOutEvasion(BaseModel):
    """Evasion success on held-out rows, counted as the evasion check counts it."""

    success: float | None
    flipped: int
    attacked: int
    already_target: int
    interval: tuple[float, float] | None


class HeldOutComparison(BaseModel):
    """Clean metrics and evasion success on the same held-out rows, before and after hardening."""

    rows: int
    metrics_before: dict[str, float | None]
    metrics_after: dict[str, float | None]
    evasion_before: HeldOutEvasion
    evasion_after: HeldOutEvasion

    def costs(self, tolerance: float = 0.0) -> dict[str, tuple[float, float]]:
        """The clean metrics hardening lowered by more than ``tolerance``: (before, after)."""
        out = {}
        for name in CLEAN_METRICS:
            before, after = self.metrics_before.get(name), self.metrics_after.get(name)
            if before is not None and after is not None and after < before - tolerance:
                out[name] = (before, after)
        return out


class Hardening(BaseModel):
    """What adversarial training did: evasion on its training sample, and the held-out cost.

    ``success_before``/``success_after`` are measured on the attacked training sample;
    ``held_out`` (when held-out rows were given) compares the models on the same held-out rows.
    """

    threat_model: str
    cost_budget: float
    rounds: list[HardeningRound]
    success_before: float
    success_after: float
    queries: int
    held_out: HeldOutComparison | None = None


def _evasions(
    sample: pd.DataFrame, labels: pd.Series, result: Any
) -> tuple[pd.DataFrame, pd.Series]:
    """The attacked rows with the changes that flipped them applied, and their true labels."""
    import pandas as pd

    rows, truth = [], []
    for position, changes, cost in zip(result.rows, result.changes, result.cost, strict=True):
        if cost is None:
            continue
        row = sample.iloc[position].copy()
        for change in changes:
            row[change["feature"]] = change["to"]
        rows.append(row)
        truth.append(labels.iloc[position])
    if not rows:
        return sample.iloc[0:0], labels.iloc[0:0]
    return pd.DataFrame(rows).astype(sample.dtypes), pd.Series(truth, name=labels.name)


def _flipped(result: TabularEvasionResult) -> int:
    return sum(c is not None for c in result.cost)


def _success(result: TabularEvasionResult) -> float:
    """Share of the correctly classified rows flipped (rows already misclassified left out)."""
    return _flipped(result) / result.n_points if result.n_points else 0.0


def harden(
    estimator: Any,
    X: pd.DataFrame,
    y: pd.Series,
    *,
    threat_model: str,
    cost_budget: float,
    rounds: int,
    rows: int,
    seed: int,
    held_out: tuple[pd.DataFrame, pd.Series, Any] | None = None,
    progress: Callable[[str], None] = lambda _message: None,
) -> tuple[Any, Hardening]:
    """Refit ``estimator`` over ``rounds`` rounds of evasions found on its training rows.

    ``held_out`` is ``(X, y, positive class)`` of rows the models never trained on: both the
    given and the hardened model are measured on them (see :class:`HeldOutComparison`).
    """
    import pandas as pd
    from sklearn.base import clone

    from mlwarden.attacks import tabular_evasion
    from mlwarden.audit import load_threat_model
    from mlwarden.models import SklearnAdapter

    threat = load_threat_model(threat_model)
    threat.check_columns(X)
    attacker_rows = X[(y != threat.target).to_numpy()]
    sample = attacker_rows.sample(n=min(rows, len(attacker_rows)), random_state=seed)
    labels = y.loc[sample.index]
    X_aug, y_aug, model = X, y, estimator
    history: list[HardeningRound] = []
    queries = 0

    def attack(current: Any) -> TabularEvasionResult:
        nonlocal queries
        adapter = SklearnAdapter(current)
        result = tabular_evasion(adapter, sample, threat, max_cost=cost_budget, seed=seed)
        queries += adapter.queries
        return result

    result = attack(model)
    before = _success(result)
    for number in range(1, rounds + 1):
        found, truth = _evasions(sample, labels, result)
        history.append(
            HardeningRound(
                round=number, attacked=result.n_points, evaded=len(found),
                success=_success(result), added_rows=len(found),
                already_target=result.already_target,
            )
        )  # fmt: skip
        if found.empty:
            break
        X_aug = pd.concat([X_aug, found], ignore_index=True)
        y_aug = pd.concat([y_aug, truth], ignore_index=True)
        progress(f"round {number}: {len(found)} evasions added, refitting")
        model = clone(model).fit(X_aug, y_aug)
        result = attack(model)
    comparison = None
    if held_out is not None:
        progress("measuring the models before and after hardening on the held-out rows")
        comparison = compare_on_held_out(
            estimator, model, held_out, threat_model=threat_model, cost_budget=cost_budget,
            seed=seed,
        )  # fmt: skip
    return model, Hardening(
        threat_model=threat_model, cost_budget=cost_budget, rounds=history,
        success_before=before, success_after=_success(result), queries=queries,
        held_out=comparison,
    )  # fmt: skip


def compare_on_held_out(
    before: Any,
    after: Any,
    held_out: tuple[pd.DataFrame, pd.Series, Any],
    *,
    threat_model: str,
    cost_budget: float,
    seed: int,
) -> HeldOutComparison:
    """Clean metrics and evasion success of two models on the same held-out rows.

    Evasion is what the evasion check measures, run on both models with the same parameters:
    the check's default number of held-out rows of the attacker's classes drawn with ``seed``,
    flips of the rows the model classifies correctly, with a 95% interval.
    """
    X, y, positive = held_out
    measured = [_measure(model, X, y, positive, threat_model, cost_budget, seed) for model in
                (before, after)]  # fmt: skip
    return HeldOutComparison(
        rows=len(X),
        metrics_before=measured[0][0],
        metrics_after=measured[1][0],
        evasion_before=measured[0][1],
        evasion_after=measured[1][1],
    )


def _measure(
    model: Any,
    X: pd.DataFrame,
    y: pd.Series,
    positive: Any,
    threat_model: str,
    cost_budget: float,
    seed: int,
) -> tuple[dict[str, float | None], HeldOutEvasion]:
    import math

    # The evasion check itself, not the registry: hardening depends on that check's code only.
    from mlwarden.audit import CheckContext, Evasion, classification_metrics
    from mlwarden.audit import evasion as evasion_check
    from mlwarden.models import SklearnAdapter

    adapter = SklearnAdapter(model)
    scores = classification_metrics(y, adapter.predict_proba(X), adapter.classes_, positive)
    metrics: dict[str, float | None] = {}
    for name in CLEAN_METRICS:
        value = getattr(scores, name)
        metrics[name] = None if value is None or math.isnan(value) else float(value)
    params = Evasion(  # rows, beam width: the check's defaults
        threat_model=threat_model,
        cost_budget=cost_budget,
        max_success=1.0,  # only the measurement is wanted here, not a verdict
    )
    finding = evasion_check(params, CheckContext(adapter, X, y, X, y, positive, None, seed))
    details = finding.details
    evasion = HeldOutEvasion(
        success=finding.value,
        flipped=details["flipped"],
        attacked=details["attacked"],
        already_target=details["already_target"],
        interval=finding.interval,
    )
    return metrics, evasion
