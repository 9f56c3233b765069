"""Adversarial training for tabular models: retrain with the evasions the attack finds.

Each round attacks a sample of the attacker's own training rows (those not of the target class)
with the constrained tabular evasion under the spec's threat model, adds every evasion found
back to the training data with its true label, and refits the chosen estimator. It is the
tabular counterpart of PGD adversarial training (Madry et al. 2018), as in Kireev, Kulynych,
Troncoso (2023) for discrete features.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    import pandas as pd


class HardeningRound(BaseModel):
    """What one round of adversarial training found and added."""

    round: int
    attacked: int
    evaded: int
    success: float
    added_rows: int


class Hardening(BaseModel):
    """Evasion success on the attacked training sample before and after hardening."""

    threat_model: str
    cost_budget: float
    rounds: list[HardeningRound]
    success_before: float
    success_after: float
    queries: int


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
    progress: Callable[[str], None] = lambda _message: None,
) -> tuple[Any, Hardening]:
    """Refit ``estimator`` over ``rounds`` rounds of evasions found on its training rows."""
    import pandas as pd
    from sklearn.base import clone

    from mlwarden.attacks._tabular import ThreatModel, bundled_threat_model, tabular_evasion
    from mlwarden.models import SklearnAdapter

    threat = (
        ThreatModel.from_yaml(threat_model)
        if threat_model.endswith((".yaml", ".yml"))
        else bundled_threat_model(threat_model)
    )
    threat.check_columns(X)
    attacker_rows = X[(y != threat.target).to_numpy()]
    sample = attacker_rows.sample(n=min(rows, len(attacker_rows)), random_state=seed)
    labels = y.loc[sample.index]
    X_aug, y_aug, model = X, y, estimator
    history: list[HardeningRound] = []
    queries = 0

    def attack(current: Any) -> tuple[Any, float]:
        nonlocal queries
        adapter = SklearnAdapter(current)
        result = tabular_evasion(adapter, sample, threat, max_cost=cost_budget, seed=seed)
        queries += adapter.queries
        evaded = sum(c is not None for c in result.cost) + result.already_target
        return result, evaded / len(sample) if len(sample) else 0.0

    result, before = attack(model)
    success = before
    for number in range(1, rounds + 1):
        found, truth = _evasions(sample, labels, result)
        history.append(
            HardeningRound(
                round=number, attacked=len(sample), evaded=len(found), success=success,
                added_rows=len(found),
            )
        )  # fmt: skip
        if found.empty:
            break
        X_aug = pd.concat([X_aug, found], ignore_index=True)
        y_aug = pd.concat([y_aug, truth], ignore_index=True)
        progress(f"round {number}: {len(found)} evasions added, refitting")
        model = clone(model).fit(X_aug, y_aug)
        result, success = attack(model)
    return model, Hardening(
        threat_model=threat_model, cost_budget=cost_budget, rounds=history,
        success_before=before, success_after=success, queries=queries,
    )  # fmt: skip
