"""Grid search with cross-validation, its fits mapped over the run's task runner.

The same search as scikit-learn's ``GridSearchCV`` (same folds, scorer, mean and standard
deviation per candidate, first best on ties, best candidate refitted on every row), but each
candidate x fold fit is one work item of :func:`mlwarden._tasks.task_map`, so the fits run on
local worker processes or as Ray tasks over a cluster with identical results.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

from mlwarden._tasks import at_least, task_map, use_runner


@dataclass(frozen=True)
class SearchResult:
    """The candidates' scores in grid order, the best one, and it refitted on every row."""

    params: list[dict[str, Any]]
    mean_scores: list[float]
    std_scores: list[float]
    ranks: list[int]
    best_index: int
    best_estimator: Any

    @property
    def best_params(self) -> dict[str, Any]:
        """The winning candidate's parameters."""
        return self.params[self.best_index]

    @property
    def best_score(self) -> float:
        """The winning candidate's mean cross-validated score."""
        return self.mean_scores[self.best_index]


def _candidates(grid: dict[str, Sequence[Any]]) -> Iterator[dict[str, Any]]:
    """Every combination, in ``ParameterGrid``'s order (keys sorted, last key fastest)."""
    from sklearn.model_selection import ParameterGrid

    yield from ParameterGrid(grid)


def grid_search(
    estimator: Any, grid: dict[str, Sequence[Any]], X: Any, y: Any, *, scoring: str, cv: Any,
    n_jobs: int = 1,
) -> SearchResult:  # fmt: skip
    """Score every candidate of ``grid`` on every fold of ``cv``; refit the best on all rows.

    Locally the fits use ``n_jobs`` processes (or the runner's, if more); on Ray, the cluster.
    """
    from sklearn.base import clone
    from sklearn.metrics import check_scoring

    params = list(_candidates(grid))
    folds = list(cv.split(X, y))
    scorer = check_scoring(estimator, scoring=scoring)

    def fit_and_score(item: tuple[int, int]) -> float:
        candidate, fold = item
        train, test = folds[fold]
        model = clone(estimator).set_params(**params[candidate])
        model.fit(_rows(X, train), _rows(y, train))
        return float(scorer(model, _rows(X, test), _rows(y, test)))

    items = list(product(range(len(params)), range(len(folds))))
    with use_runner(at_least(n_jobs)):
        scores = np.asarray(task_map(fit_and_score, items)).reshape(len(params), len(folds))
    mean, std = scores.mean(axis=1), scores.std(axis=1)
    order = np.argsort(-mean, kind="stable")
    ranks = np.empty(len(params), dtype=int)
    ranks[order] = np.arange(1, len(params) + 1)
    for i in range(1, len(order)):  # ties share the better rank, as scipy's rankdata("min")
        if mean[order[i]] == mean[order[i - 1]]:
            ranks[order[i]] = ranks[order[i - 1]]
    best = int(order[0])
    refitted = clone(estimator).set_params(**params[best]).fit(X, y)
    return SearchResult(
        params=params,
        mean_scores=mean.tolist(),
        std_scores=std.tolist(),
        ranks=ranks.tolist(),
        best_index=best,
        best_estimator=refitted,
    )


def _rows(data: Any, index: np.ndarray) -> Any:
    return data.iloc[index] if hasattr(data, "iloc") else data[index]
