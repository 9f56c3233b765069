"""The snow detector and the circle detector: shortcut features and off-distribution confidence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.model_selection import train_test_split

from mlwarden import datasets
from mlwarden.attacks import uniform_noise
from mlwarden.audit import (
    CheckContext,
    Finding,
    OutOfDistributionConfidence,
    foreign_rows,
    run_check,
)
from mlwarden.models import SklearnAdapter


def _phishing_with_ticket(shortcut: bool) -> CheckContext:
    """A `ticket` column matching the label in 99% of training rows (or none), random in test."""
    d = datasets.load("phishing")
    rng = np.random.default_rng(0)
    X_train, X_test, y_train, y_test = train_test_split(
        d.X, d.y, test_size=0.3, random_state=0, stratify=d.y
    )
    X_train, X_test = X_train.copy(), X_test.copy()
    is_phishing = (y_train == "phishing").to_numpy().astype(int)
    agree = rng.random(len(X_train)) < 0.99
    X_train["ticket"] = (
        np.where(agree, is_phishing, 1 - is_phishing) if shortcut
        else rng.integers(0, 2, len(X_train))
    )  # fmt: skip
    X_test["ticket"] = rng.integers(0, 2, len(X_test))
    model = GradientBoostingClassifier(n_estimators=60, max_depth=3, random_state=0)
    model.fit(X_train, y_train)
    return CheckContext(SklearnAdapter(model), X_train, y_train, X_test, y_test, "phishing")


@pytest.fixture(scope="module")
def shortcut() -> CheckContext:
    return _phishing_with_ticket(shortcut=True)


@pytest.fixture(scope="module")
def clean() -> CheckContext:
    return _phishing_with_ticket(shortcut=False)


IRRELEVANT = {"features": ["ticket"], "max_flip_rate": 0.02}
SHARE = {"max_share": 0.6}


def test_an_irrelevant_feature_that_moves_decisions_fails_the_shortcut_model(
    shortcut: CheckContext, clean: CheckContext
) -> None:
    bad = run_check("irrelevant_features", IRRELEVANT, shortcut)
    good = run_check("irrelevant_features", IRRELEVANT, clean)
    assert not bad.passed and bad.value is not None and bad.value > 0.1
    assert good.passed and good.value == 0.0
    assert bad.queries == 2 * bad.details["rows"]


def test_one_feature_carrying_the_attribution_fails_the_shortcut_model(
    shortcut: CheckContext, clean: CheckContext
) -> None:
    bad = run_check("attribution_share", SHARE, shortcut)
    good = run_check("attribution_share", SHARE, clean)
    assert not bad.passed
    assert bad.details["importances"][0]["feature"] == "ticket"
    assert good.passed
    assert good.details["importances"][0]["feature"] != "ticket"


def test_a_declared_feature_the_model_does_not_have_fails_unmeasured(clean: CheckContext) -> None:
    finding = run_check("irrelevant_features", {"features": ["snow"]}, clean)
    assert not finding.passed and finding.value is None
    assert "'snow'" in finding.message


def _german() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame, pd.Series]:
    d = datasets.load("german")
    X = pd.get_dummies(d.X, dtype=float)
    return X.iloc[:700], d.y.iloc[:700], X.iloc[700:], d.y.iloc[700:]


def test_a_fully_grown_tree_gives_no_confidence_signal_and_tree_ensembles_do() -> None:
    from mlwarden.pipeline._calibration import calibration_split
    from mlwarden.pipeline._estimators import build_estimator

    split = calibration_split("german")  # the pipeline's preprocessing, as users get it
    params = {"min_auroc": 0.55, "dataset": "german"}

    def audit(estimator: str, model_params: dict[str, object]) -> Finding:
        model = build_estimator(estimator, model_params, split.schema, 0)
        model.fit(split.X_train, split.y_train)
        ctx = CheckContext(
            SklearnAdapter(model), split.X_train, split.y_train, split.X_test, split.y_test,
            "bad", split.schema,
        )  # fmt: skip
        return run_check("ood_confidence", params, ctx)

    tree = audit("decision_tree", {})
    # every answer, on or off the data, has confidence 1: nothing to tell them apart
    assert tree.value == 0.5 and tree.verdict == "fail", tree.message
    assert tree.queries == 300 + 1000 and tree.n == 300 + 1000
    # The old share-of-confident-answers default failed every tree ensemble tried.
    for estimator in ("random_forest", "gradient_boosting"):
        finding = audit(estimator, {"n_estimators": 100})
        assert finding.verdict == "pass", finding.message
        assert finding.interval is not None and finding.interval[0] >= 0.55


def test_the_old_share_parameter_says_what_replaced_it() -> None:
    with pytest.raises(ValidationError, match="max_share was replaced by min_auroc"):
        OutOfDistributionConfidence.model_validate({"max_share": 0.2})


def test_ood_inputs_stay_inside_the_declared_feature_space() -> None:
    adult = datasets.load("adult")
    noise = uniform_noise(adult.X, 500, adult.schema, seed=0)
    foreign = foreign_rows(adult.X, 500, adult.schema, seed=0, exclude="adult")
    for frame in (noise, foreign):
        assert list(frame.columns) == list(adult.X.columns)
        assert frame["age"].between(0, 150).all()
        allowed = set(adult.schema.columns["workclass"].categories or [])
        assert set(frame["workclass"]) <= allowed
    assert not foreign.equals(noise)
