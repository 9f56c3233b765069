"""The grid search scores, ranks and refits exactly as scikit-learn's GridSearchCV does."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from mlwarden import datasets
from mlwarden._tasks import JoblibRunner, use_runner
from mlwarden.pipeline._search import grid_search


@pytest.mark.parametrize(
    ("estimator", "grid", "scoring"),
    [
        (
            make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)),
            {"logisticregression__C": [0.01, 0.1, 1.0]},
            "roc_auc",
        ),
        # depth 1 and 2 tie on some folds: ties go to the first candidate, as in scikit-learn
        (
            DecisionTreeClassifier(random_state=0),
            {"max_depth": [1, 1, 3], "min_samples_leaf": [1, 20]},
            "accuracy",
        ),
    ],
)
def test_the_search_matches_gridsearchcv_on_one_worker_and_two(
    estimator: object, grid: dict[str, list[object]], scoring: str
) -> None:
    data = datasets.load("german")
    X = data.X.select_dtypes("number")
    y = data.y
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    reference = GridSearchCV(estimator, grid, scoring=scoring, cv=cv).fit(X, y)
    for runner in (JoblibRunner(1), JoblibRunner(2)):
        with use_runner(runner):
            ours = grid_search(estimator, grid, X, y, scoring=scoring, cv=cv)
        assert ours.params == list(reference.cv_results_["params"])
        np.testing.assert_array_equal(ours.mean_scores, reference.cv_results_["mean_test_score"])
        np.testing.assert_array_equal(ours.std_scores, reference.cv_results_["std_test_score"])
        assert ours.ranks == reference.cv_results_["rank_test_score"].tolist()
        assert ours.best_index == reference.best_index_
        np.testing.assert_array_equal(
            ours.best_estimator.predict_proba(X), reference.best_estimator_.predict_proba(X)
        )
