"""Attacks whose independent parts go through the task runner: the same results on one worker,
two local processes and Ray, with every query still counted on the caller's model."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlwarden._tasks import JoblibRunner, RayRunner, Runner, use_runner
from mlwarden.attacks import _tabular, bundled_threat_model, tabular_evasion
from mlwarden.models import SklearnAdapter
from tests.test_tasks import ray_cluster  # noqa: F401 (a Ray instance for this module)


def _on_every_runner(work: Callable[[], Any]) -> list[Any]:
    """``work()`` on one worker (in this process), two local processes and Ray."""
    runners: list[Runner] = [JoblibRunner(1), JoblibRunner(2), RayRunner()]
    out = []
    for runner in runners:
        with use_runner(runner):
            out.append(work())
    return out


@pytest.fixture(scope="module")
def phishing() -> tuple[Any, pd.DataFrame]:
    from sklearn.linear_model import LogisticRegression

    from mlwarden import datasets

    d = datasets.load("phishing")
    clf = LogisticRegression(max_iter=500).fit(d.X.iloc[:2000], d.y.iloc[:2000])
    return clf, d.X.iloc[2000:2040]


@pytest.fixture
def row_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows go to the workers however few they are (the default keeps small searches here)."""
    monkeypatch.setattr(_tabular, "_MIN_ROWS_PER_CHUNK", 1)


@pytest.mark.usefixtures("ray_cluster", "row_chunks")
def test_evasion_rows_give_the_same_flips_and_queries_on_every_runner(
    phishing: tuple[Any, pd.DataFrame],
) -> None:
    clf, X = phishing
    threat = bundled_threat_model("phishing")
    models: list[SklearnAdapter] = []

    def attack() -> dict[str, Any]:
        model = SklearnAdapter(clf)
        models.append(model)
        result = tabular_evasion(model, X, threat, max_cost=3.0, beam_width=4, seed=3)
        return result.model_dump(exclude={"wall_time_s"})

    results = _on_every_runner(attack)
    assert results[0]["n_points"] > 10 and results[0]["success_rate"] > 0
    assert results[1] == results[0] and results[2] == results[0]
    # The rows searched in worker processes queried copies: the caller's model counts them all.
    assert [m.queries for m in models] == [results[0]["queries"]] * 3
    assert results[0]["queries"] == len(X) + sum(results[0]["row_queries"])


def test_evasion_with_a_budget_keeps_the_serial_shares_on_any_runner(
    phishing: tuple[Any, pd.DataFrame],
) -> None:
    clf, X = phishing
    threat = bundled_threat_model("phishing")

    def attack() -> tuple[list[float | None], int, int]:
        model = SklearnAdapter(clf)
        result = tabular_evasion(model, X, threat, max_cost=3.0, beam_width=4, budget=300)
        return result.cost, result.queries, model.queries

    serial = attack()
    with use_runner(JoblibRunner(2)):
        assert attack() == serial
    assert serial[1] == serial[2] <= 300


@pytest.mark.usefixtures("ray_cluster")
def test_membership_bootstrap_intervals_are_the_same_on_every_runner() -> None:
    from mlwarden.attacks import membership_metrics

    rng = np.random.default_rng(0)
    members = rng.random(300) < 0.5
    scores = rng.normal(size=300) + 0.8 * members

    def metrics() -> tuple[Any, ...]:
        m = membership_metrics(members, scores, n_bootstrap=60, seed=5)
        return m.auc_ci, m.tpr_at_fpr_ci

    results = _on_every_runner(metrics)
    assert results[1] == results[0] and results[2] == results[0]
    low, high = results[0][0]
    assert low < membership_metrics(members, scores, n_bootstrap=60, seed=5).auc < high
    # Another seed draws other resamples: the intervals come from the seed, not a constant.
    assert membership_metrics(members, scores, n_bootstrap=60, seed=6).auc_ci != (low, high)


@pytest.mark.usefixtures("ray_cluster")
def test_deepsloth_batches_are_the_same_on_every_runner() -> None:
    torch = pytest.importorskip("torch")
    from mlwarden.attacks import deepsloth
    from mlwarden.models import load_digits_split
    from mlwarden.models._sdn import digits_sdn, train_sdn

    split = load_digits_split()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on a shared 2-core box train far slower
    try:
        model = train_sdn(digits_sdn(8, seed=0), split.X_train, split.y_train, epochs=4)
    finally:
        torch.set_num_threads(threads)
    X = split.X_test[:48]
    Q = 0.9  # a common SDN confidence threshold

    def attack() -> tuple[Any, ...]:
        result = deepsloth(model, X, eps=0.2, threshold=Q, steps=4, batch_size=16, latency=False)
        assert result.adversarial is not None
        return result.efficacy_clean, result.efficacy_adversarial, result.adversarial.tobytes()

    results = _on_every_runner(attack)
    assert results[1] == results[0] and results[2] == results[0]
    assert torch.get_num_threads() == threads  # the workers' one-thread setting stays there
    clean, attacked, _ = results[0]
    assert attacked < clean  # the batches were attacked, not passed through


class _Unpicklable(SklearnAdapter):
    """A model that cannot be copied to another process (as an ONNX session)."""

    def __init__(self, estimator: Any) -> None:
        super().__init__(estimator)
        self.lock = threading.Lock()


@pytest.mark.usefixtures("row_chunks")
def test_evasion_on_a_model_that_cannot_travel_searches_here(
    phishing: tuple[Any, pd.DataFrame],
) -> None:
    clf, X = phishing
    threat = bundled_threat_model("phishing")
    serial = tabular_evasion(_Unpicklable(clf), X, threat, max_cost=3.0, beam_width=4)
    model = _Unpicklable(clf)
    with use_runner(JoblibRunner(2)):
        result = tabular_evasion(model, X, threat, max_cost=3.0, beam_width=4)
    assert result.cost == serial.cost and result.queries == model.queries == serial.queries
