"""Calibration of the default checks: healthy baselines and planted weaknesses, side by side.

A default threshold earns trust only if it passes models with nothing wrong and fails models
with the weakness its check is about. This module builds both kinds on a bundled dataset:

- healthy: regularised logistic regression and gradient boosting (on phishing, also gradient
  boosting hardened against the bundled threat model by adversarial training);
- planted: a shortcut column (agrees with the label on 99% of training rows, noise at test
  time), a leaked label (a column copying the label, at test time too), a fully grown decision
  tree, a forest trained to memorise (no bootstrap, unlimited depth), and, under the phishing
  threat model, the unhardened booster, evadable at cost 1 to 3.

:func:`calibrate` runs every default check group (:data:`~mlwarden.audit.CHECK_GROUPS`) on each
and returns the verdicts; ``bench/calibration.py`` prints the table, the README shows it and
``tests/audit/test_calibration.py`` pins its rows. It trains models, so it lives in the
pipeline, above the checks it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from mlwarden.audit import CHECK_GROUPS, CheckContext, Finding, run_check
from mlwarden.pipeline._adversarial_training import harden
from mlwarden.pipeline._estimators import build_estimator

if TYPE_CHECKING:
    import pandas as pd

    from mlwarden.data import TableSchema

#: Each planted weakness and the check group made to catch it.
WEAKNESSES: dict[str, str] = {
    "shortcut_column": "shortcuts",
    "leaked_label": "shortcuts",
    "fully_grown_tree": "generalization",
    "memorising_forest": "membership",
    "evadable_booster": "evasion",
}
HEALTHY = ("logistic_regression", "gradient_boosting", "hardened_booster")


@dataclass(frozen=True)
class CalibrationSplit:
    """A bundled dataset split for calibration (stratified, seeded)."""

    dataset: str
    X_train: pd.DataFrame
    y_train: pd.Series
    X_test: pd.DataFrame
    y_test: pd.Series
    positive: Any
    schema: TableSchema


class CalibrationRow(BaseModel):
    """One model under one check group: the finding's verdict, value, interval and size."""

    dataset: str
    model: str
    kind: str  # "healthy" or "planted"
    weakness_of: str | None  # the group the planted weakness is made for
    group: str
    verdict: str
    value: float | None
    interval: tuple[float, float] | None
    n: int | None
    message: str
    seconds: float


def calibration_split(
    dataset: str, rows: int | None = None, test_size: float = 0.3, seed: int = 0
) -> CalibrationSplit:
    """``dataset`` (a bundled name), ``rows`` of it at most, split for calibration."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    from mlwarden import data as datasets

    data = datasets.load(dataset)
    X, y = data.X, data.y
    if rows is not None and len(X) > rows:
        keep = np.sort(np.random.default_rng(seed).permutation(len(X))[:rows])
        X, y = X.iloc[keep], y.iloc[keep]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=seed, stratify=y
    )
    return CalibrationSplit(dataset, X_train, y_train, X_test, y_test, data.positive, data.schema)


def _with_column(split: CalibrationSplit, name: str, train: Any, test: Any) -> CalibrationSplit:
    from mlwarden.data import ColumnSchema

    columns = {**split.schema.columns, name: ColumnSchema(type="integer", min=0, max=1)}
    schema = split.schema.model_copy(update={"columns": columns})
    return replace(
        split,
        X_train=split.X_train.assign(**{name: train}),
        X_test=split.X_test.assign(**{name: test}),
        schema=schema,
    )


def _shortcut(split: CalibrationSplit, seed: int) -> CalibrationSplit:
    """A column that agrees with the label on 99% of training rows and is noise at test time:
    the snow behind the wolves."""
    import numpy as np

    rng = np.random.default_rng([seed, 3])
    truth = (split.y_train == split.positive).to_numpy().astype(int)
    flip = rng.random(len(truth)) < 0.01
    return _with_column(
        split, "shortcut", np.where(flip, 1 - truth, truth), rng.integers(0, 2, len(split.X_test))
    )


def _leak(split: CalibrationSplit, seed: int) -> CalibrationSplit:
    """A column that copies the label, in training and test rows alike (target leakage: a field
    filled in once the outcome was known)."""

    def leaked(y: pd.Series) -> Any:
        return (y == split.positive).to_numpy().astype(int)

    return _with_column(split, "leak", leaked(split.y_train), leaked(split.y_test))


#: Gradient boosting as one would ship it: shallow trees, shrinkage and row subsampling.
_REGULARISED = {"n_estimators": 100, "max_depth": 3, "learning_rate": 0.05, "subsample": 0.8}

ModelRecipe = tuple[str, dict[str, Any], Callable[[CalibrationSplit, int], CalibrationSplit] | None]

RECIPES: dict[str, ModelRecipe] = {
    "logistic_regression": ("logistic_regression", {"C": 1.0, "max_iter": 2000}, None),
    "gradient_boosting": ("gradient_boosting", _REGULARISED, None),
    "hardened_booster": ("gradient_boosting", _REGULARISED, None),
    "shortcut_column": ("gradient_boosting", {"n_estimators": 100, "max_depth": 3}, _shortcut),
    "leaked_label": ("gradient_boosting", {"n_estimators": 100, "max_depth": 3}, _leak),
    "fully_grown_tree": ("decision_tree", {}, None),
    "memorising_forest": (
        "random_forest",
        {"n_estimators": 100, "bootstrap": False, "max_features": "sqrt"},
        None,
    ),
    "evadable_booster": ("gradient_boosting", {"n_estimators": 100, "max_depth": 3}, None),
}

#: Adversarial training of ``hardened_booster`` (phishing threat model only).
HARDENING = {"threat_model": "phishing", "cost_budget": 3, "rounds": 3, "rows": 600}


def calibration_model(name: str, split: CalibrationSplit, seed: int = 0) -> CheckContext:
    """Fit the model ``name`` of :data:`RECIPES` on ``split``; the check context to audit it."""
    from mlwarden.models import SklearnAdapter

    estimator, params, plant = RECIPES[name]
    if plant is not None:
        split = plant(split, seed)
    model = build_estimator(estimator, params, split.schema, seed).fit(split.X_train, split.y_train)
    if name == "hardened_booster":
        model, _ = harden(model, split.X_train, split.y_train, seed=seed, **HARDENING)  # type: ignore[arg-type]
    return CheckContext(
        SklearnAdapter(model), split.X_train, split.y_train, split.X_test, split.y_test,
        split.positive, split.schema, seed,
    )  # fmt: skip


def models_for(dataset: str) -> list[str]:
    """The calibration models that apply to ``dataset`` (the evasion pair needs its threat
    model, which only phishing ships)."""
    phishing_only = {"hardened_booster", "evadable_booster"}
    return [m for m in RECIPES if dataset == "phishing" or m not in phishing_only]


def groups_for(dataset: str) -> list[str]:
    """The check groups that apply to ``dataset`` (evasion needs a threat model)."""
    return [g for g in CHECK_GROUPS if dataset == "phishing" or g != "evasion"]


def run_group(group: str, ctx: CheckContext, dataset: str) -> Finding:
    """One default check group (a single check) on one model."""
    ((key, params),) = CHECK_GROUPS[group]
    if key == "ood_confidence":
        params = {**params, "dataset": dataset}
    return run_check(key, params, ctx)


def calibrate(
    dataset: str,
    *,
    models: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    rows: int | None = None,
    seed: int = 0,
    progress: Callable[[str], None] = lambda _message: None,
) -> list[CalibrationRow]:
    """Every default check group on every calibration model of ``dataset``."""
    split = calibration_split(dataset, rows=rows, seed=seed)
    found = []
    for name in models or models_for(dataset):
        ctx = calibration_model(name, split, seed)
        kind = "planted" if name in WEAKNESSES else "healthy"
        for group in groups or groups_for(dataset):
            finding = run_group(group, ctx, dataset)
            progress(f"{dataset} {name} {group}: {finding.verdict}")
            found.append(
                CalibrationRow(
                    dataset=dataset, model=name, kind=kind, weakness_of=WEAKNESSES.get(name),
                    group=group, verdict=finding.verdict, value=finding.value,
                    interval=finding.interval, n=finding.n, message=finding.message,
                    seconds=finding.wall_time_s,
                )
            )  # fmt: skip
    return found
