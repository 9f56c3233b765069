"""The fairness checks measure per-group rates themselves and catch a planted bias on Adult."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import mlwarden.audit._fairness  # noqa: F401  (registers the checks)
from mlwarden import datasets
from mlwarden.audit._checks import CHECKS, CheckContext, Finding, run_check
from mlwarden.errors import SpecError
from mlwarden.models import SklearnAdapter

# ------------------------------------------------------------- a model with known predictions


class FixedModel:
    """An adapter whose decisions are given up front (one per row), counting queries."""

    def __init__(self, decisions: list[Any], classes: list[Any]) -> None:
        self.decisions = np.asarray(decisions, dtype=object)
        self._classes = np.asarray(classes, dtype=object)
        self._queries = 0

    @property
    def classes_(self) -> np.ndarray:
        return self._classes

    @property
    def queries(self) -> int:
        return self._queries

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        self._queries += len(X)
        picked = self.decisions[X.index.to_numpy()]
        return np.stack([picked == c for c in self._classes], axis=1).astype(float)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        proba = self.predict_proba(X)
        return np.asarray(self._classes[np.argmax(proba, axis=1)])


def _rows(group: str, n_pos: int, n_neg: int, tp: int, fp: int) -> pd.DataFrame:
    truth = ["bad"] * n_pos + ["good"] * n_neg
    pred = ["bad"] * tp + ["good"] * (n_pos - tp) + ["bad"] * fp + ["good"] * (n_neg - fp)
    return pd.DataFrame({"sex": group, "income": 1.0, "truth": truth, "pred": pred})


def _fixed_context(
    *blocks: pd.DataFrame, classes: tuple[str, ...] = ("bad", "good")
) -> CheckContext:
    frame = pd.concat(blocks, ignore_index=True)
    X = frame[["sex", "income"]]
    model = FixedModel(frame["pred"].tolist(), list(classes))
    return CheckContext(model, X, frame["truth"], X, frame["truth"], "bad")


@pytest.fixture
def known() -> CheckContext:
    """F: selection 0.1, TPR 0.3; M: selection 0.4, TPR 0.8; X: 10 rows, all selected."""
    return _fixed_context(
        _rows("F", 10, 40, 3, 2), _rows("M", 40, 60, 32, 8), _rows("X", 10, 0, 10, 0)
    )


def test_both_checks_are_registered_with_their_summaries() -> None:
    assert {"demographic_parity", "equal_opportunity"} <= set(CHECKS)
    assert "Selection rates" in CHECKS["demographic_parity"].summary
    assert "True-positive rates" in CHECKS["equal_opportunity"].summary


def test_demographic_parity_measures_the_selection_rate_difference(known: CheckContext) -> None:
    finding = run_check("demographic_parity", {"attribute": "sex", "max_difference": 0.25}, known)
    assert finding.value == pytest.approx(0.4 - 0.1)  # X (10 rows < 30) is left out
    assert not finding.passed
    assert (finding.metric, finding.comparison, finding.threshold) == (
        "demographic_parity_difference",
        "<=",
        0.25,
    )
    assert finding.queries == 160  # the test split, once
    assert finding.wall_time_s >= 0
    assert "M 0.4000 vs F 0.1000" in finding.message and "> 0.25" in finding.message
    assert "fails the 80% rule" in finding.message
    details = finding.details
    assert details["attribute"] == "sex" and details["n_test"] == 160
    assert details["disparate_impact_ratio"] == pytest.approx(0.25)
    assert details["passes_four_fifths_rule"] is False
    table = {g["group"]: g for g in details["groups"]}
    assert table["F"]["selection_rate"] == pytest.approx(0.1)
    assert table["X"]["compared"] is False
    assert [e["group"] for e in details["excluded"]] == ["X"]


def test_equal_opportunity_measures_the_tpr_difference(known: CheckContext) -> None:
    finding = run_check("equal_opportunity", {"attribute": "sex", "max_difference": 0.6}, known)
    assert finding.value == pytest.approx(0.8 - 0.3)
    assert finding.passed and finding.metric == "equal_opportunity_difference"
    assert "true-positive rate difference 0.5000" in finding.message
    strict = run_check("equal_opportunity", {"attribute": "sex", "max_difference": 0.4}, known)
    assert not strict.passed


def test_min_group_size_is_a_parameter(known: CheckContext) -> None:
    params = {"attribute": "sex", "max_difference": 0.5, "min_group_size": 5}
    finding = run_check("demographic_parity", params, known)
    assert finding.value == pytest.approx(1.0 - 0.1)  # X, all selected, now counts
    assert finding.details["excluded"] == []


def test_a_missing_attribute_fails_the_finding_without_querying(known: CheckContext) -> None:
    finding = run_check("demographic_parity", {"attribute": "race", "max_difference": 0.1}, known)
    assert not finding.passed and finding.value is None
    assert "'race' is not a column of the test split" in finding.message
    assert "['sex', 'income']" in finding.message
    assert finding.queries == 0


def test_a_binary_check_on_more_than_two_classes_is_a_spec_error() -> None:
    ctx = _fixed_context(_rows("F", 40, 40, 20, 20), classes=("bad", "good", "unsure"))
    with pytest.raises(SpecError, match="needs a binary classifier, and the model has 3 classes"):
        run_check("equal_opportunity", {"attribute": "sex", "max_difference": 0.1}, ctx)
    assert ctx.model.queries == 0


def test_fewer_than_two_comparable_groups_fails_the_finding() -> None:
    ctx = _fixed_context(_rows("F", 40, 40, 20, 20), _rows("M", 5, 5, 5, 5))
    finding = run_check("demographic_parity", {"attribute": "sex", "max_difference": 0.1}, ctx)
    assert not finding.passed and finding.value is None
    assert "fewer than two groups with at least 30 rows" in finding.message
    assert finding.queries == 90


def test_an_absent_positive_class_fails_the_finding() -> None:
    ctx = _fixed_context(_rows("F", 0, 40, 0, 0), _rows("M", 0, 40, 0, 0))
    finding = run_check("equal_opportunity", {"attribute": "sex", "max_difference": 0.1}, ctx)
    assert not finding.passed
    assert "positive class 'bad' is not among the true labels" in finding.message


@pytest.mark.parametrize(
    "params",
    [
        {"attribute": "sex", "max_difference": 1.5},
        {"attribute": "sex", "max_difference": 0.1, "min_group_size": 0},
        {"attribute": "", "max_difference": 0.1},
        {"attribute": "sex", "max_difference": 0.1, "threshold": 0.2},
        {"max_difference": 0.1},
    ],
)
def test_bad_parameters_are_rejected(params: dict[str, Any], known: CheckContext) -> None:
    with pytest.raises(ValidationError):
        run_check("demographic_parity", params, known)


# --------------------------------------------------------------------- planted bias on Adult

# Measured on this sample and split (LogisticRegression, 4,000 training rows, 2,000 test rows):
#   demographic parity: clean 0.178, biased 0.239 (sample seeds 0-3: clean 0.15-0.20,
#   biased 0.23-0.24) -- Adult's own base rates (men 0.30, women 0.11) keep the clean model far
#   from parity, so the threshold sits between the two;
#   equal opportunity: clean 0.133, biased 0.558 (seeds 0-3: clean 0.04-0.20, biased 0.50-0.56).
DP_THRESHOLD = 0.21
EO_THRESHOLD = 0.30


def _pipeline(numeric: list[str], categorical: list[str]) -> Pipeline:
    categories = make_pipeline(
        SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
    )
    prepare = ColumnTransformer(
        [("numeric", StandardScaler(), numeric), ("categorical", categories, categorical)]
    )
    return make_pipeline(prepare, LogisticRegression(max_iter=2000))


@pytest.fixture(scope="module")
def adult_contexts() -> dict[str, CheckContext]:
    """A clean and a biased model on the same Adult sample, each in its own check context.

    The biased model's training labels have 90% of the women earning >50K flipped to <=50K. The
    models one-hot encode inside their pipeline, so the test split keeps the raw ``sex`` column.
    """
    d = datasets.load("adult")
    sample = d.frame.sample(n=6000, random_state=0).reset_index(drop=True)
    X, y = sample.drop(columns=[d.label]), sample[d.label]
    train = np.arange(len(sample)) < 4000
    X_train, y_train, X_test, y_test = X[train], y[train], X[~train], y[~train]
    women_earning = (X_train["sex"] == "Female") & (y_train == ">50K")
    flip = women_earning & (np.random.default_rng(0).random(len(y_train)) < 0.9)
    y_biased = y_train.where(~flip, "<=50K")
    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
    categorical = [c for c in X.columns if c not in numeric]
    contexts = {}
    for name, labels in (("clean", y_train), ("biased", y_biased)):
        model = _pipeline(numeric, categorical).fit(X_train, labels)
        contexts[name] = CheckContext(
            SklearnAdapter(model), X_train, y_train, X_test, y_test, d.positive
        )
    return contexts


def _check(key: str, ctx: CheckContext, threshold: float) -> Finding:
    return run_check(key, {"attribute": "sex", "max_difference": threshold}, ctx)


def test_demographic_parity_fails_the_biased_model_and_passes_the_clean_one(
    adult_contexts: dict[str, CheckContext],
) -> None:
    clean = _check("demographic_parity", adult_contexts["clean"], DP_THRESHOLD)
    biased = _check("demographic_parity", adult_contexts["biased"], DP_THRESHOLD)
    assert clean.passed, clean.message
    assert not biased.passed, biased.message
    assert biased.value > clean.value
    assert biased.queries == clean.queries == 2000
    women = {g["group"]: g for g in biased.details["groups"]}["Female"]
    assert women["selection_rate"] < 0.02  # the model learned to (almost) never select women
    assert biased.details["disparate_impact_ratio"] < 0.1 < clean.details["disparate_impact_ratio"]


def test_equal_opportunity_fails_the_biased_model_and_passes_the_clean_one(
    adult_contexts: dict[str, CheckContext],
) -> None:
    clean = _check("equal_opportunity", adult_contexts["clean"], EO_THRESHOLD)
    biased = _check("equal_opportunity", adult_contexts["biased"], EO_THRESHOLD)
    assert clean.passed, clean.message
    assert not biased.passed, biased.message
    assert biased.value > clean.value + 0.25  # the gap is wide, not a threshold coincidence
    assert "Male" in biased.message and "Female" in biased.message
