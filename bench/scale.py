"""Parallel work inside steps: one worker, local joblib at 2, and Ray on a 2-node cluster.

Runs, in one process, the three parallel workloads of issue 15 on each engine:

* grid search: 8 candidates x 3 folds = 24 random-forest fits on UCI Adult (the train step's
  ``grid_search``);
* LiRA with 16 reference models (random forests) on Adult;
* the distillation curve: 6 budgets, one gradient-boosted surrogate each, on UCI Phishing;
* evasion rows: the cheapest flip of each of the 6055 held-out Phishing rows (the search of
  the audit's ``evasion`` check, no query limit) against a gradient-boosted model.

Engines: ``JoblibRunner(1)`` (the baseline, in this process), ``JoblibRunner(2)`` (two local
processes) and ``RayRunner`` on a real cluster built as Ray's test-suite builds one (a head that
schedules nothing and two one-CPU worker nodes, separate processes). Prints each time, the
speed-up over one worker, Ray's overhead over joblib at the same worker count, whether the
results are identical, and an Amdahl estimate of the speed-up on 32 nodes from the measured
serial fraction and per-task overhead. Exits 1 if a result differs between engines.

Run by hand: ``python bench/scale.py`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per fit: workers are the parallelism
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from mlwarden import datasets
from mlwarden._tasks import JoblibRunner, RayRunner, Runner, use_runner


def _adult() -> tuple[pd.DataFrame, pd.Series]:
    data = datasets.load("adult")
    X = pd.get_dummies(data.X, dtype=float)
    return X, (data.y == data.positive).astype(int)


def grid(X: pd.DataFrame, y: pd.Series) -> tuple[Callable[[], Any], int]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold

    from mlwarden.pipeline._search import grid_search

    rows = X.iloc[:30_000], y.iloc[:30_000]
    params = {"n_estimators": [60, 120], "max_depth": [10, 20], "min_samples_leaf": [1, 5]}
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)

    def work() -> Any:
        forest = RandomForestClassifier(random_state=0, n_jobs=1)
        result = grid_search(forest, params, *rows, scoring="roc_auc", cv=cv)
        return result.mean_scores, result.best_index

    return work, 24


def lira_work(X: pd.DataFrame, y: pd.Series) -> tuple[Callable[[], Any], int]:
    from sklearn.ensemble import RandomForestClassifier

    from mlwarden.attacks import lira
    from mlwarden.models import SklearnAdapter

    Xa, ya = X.to_numpy(), y.to_numpy()
    order = np.random.default_rng(0).permutation(len(Xa))
    train, held, pop = order[:1000], order[1000:2000], order[2000:8000]

    def forest() -> RandomForestClassifier:
        return RandomForestClassifier(n_estimators=150, random_state=0, n_jobs=1)

    target = SklearnAdapter(forest().fit(Xa[train], ya[train]))
    cand = np.concatenate([Xa[train], Xa[held]]), np.concatenate([ya[train], ya[held]])
    member = np.r_[np.ones(1000, bool), np.zeros(1000, bool)]

    def work() -> Any:
        result = lira(target, *cand, member, Xa[pop], ya[pop], forest, n_reference=16,
                      n_bootstrap=20)  # fmt: skip
        return result.auc, result.tpr_at_fpr

    return work, 16


def distillation_work() -> tuple[Callable[[], Any], int]:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from mlwarden.attacks import extract_distillation
    from mlwarden.models import SklearnAdapter

    data = datasets.load("phishing")
    order = np.random.default_rng(0).permutation(len(data.X))
    X_train, y_train = data.X.iloc[order[:5000]], data.y.iloc[order[:5000]]
    X_test = data.X.iloc[order[5000:7000]].reset_index(drop=True)
    target = HistGradientBoostingClassifier(random_state=0).fit(X_train, y_train)
    budgets = (500, 1000, 2000, 4000, 8000, 16000)

    def work() -> Any:
        result = extract_distillation(
            SklearnAdapter(target), X_train.reset_index(drop=True), X_test=X_test,
            schema=data.schema, budgets=budgets, true_model=target,
        )  # fmt: skip
        return [(p.budget, p.fidelity_test, p.fidelity_uniform) for p in result.curve]

    return work, len(budgets)


def evasion_work() -> tuple[Callable[[], Any], int]:
    from sklearn.ensemble import GradientBoostingClassifier

    from mlwarden.attacks import bundled_threat_model, tabular_evasion
    from mlwarden.models import SklearnAdapter

    data = datasets.load("phishing")
    order = np.random.default_rng(0).permutation(len(data.X))
    X_train, y_train = data.X.iloc[order[:5000]], data.y.iloc[order[:5000]]
    rows = data.X.iloc[order[5000:]]
    target = GradientBoostingClassifier(n_estimators=100, random_state=0).fit(X_train, y_train)
    threat = bundled_threat_model("phishing")

    def work() -> Any:
        model = SklearnAdapter(target)
        result = tabular_evasion(model, rows, threat, max_cost=8.0, beam_width=8)
        return result.cost, result.row_queries, result.queries, model.queries

    return work, len(rows)


def _timed(runner: Runner, work: Callable[[], Any]) -> tuple[float, Any]:
    with use_runner(runner):
        work()  # warm-up: worker processes and imports, as a long-lived executor has them
        start = time.perf_counter()
        result = work()
        return time.perf_counter() - start, result


def main() -> int:
    """Build the cluster, time every workload on every engine, print the table."""
    import ray
    from ray.cluster_utils import Cluster

    X, y = _adult()
    workloads = {
        "grid search (24 fits)": grid(X, y),
        "LiRA (16 references)": lira_work(X, y),
        "distillation (6 budgets)": distillation_work(),
        "evasion (6055 rows)": evasion_work(),
    }
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    engines: dict[str, Runner] = {
        "1 worker": JoblibRunner(1),
        "joblib x2": JoblibRunner(2),
        "Ray 2 nodes": RayRunner(),
    }
    failed = False
    print(f"{'workload':<26}{'1 worker':>10}{'joblib x2':>11}{'Ray 2 nodes':>13}"
          f"{'speed-up joblib':>17}{'speed-up Ray':>14}{'Ray/joblib':>12}{'same':>6}"
          f"{'32 nodes (est.)':>17}")  # fmt: skip
    try:
        for name, (work, tasks) in workloads.items():
            times, results = {}, {}
            for engine, runner in engines.items():
                times[engine], results[engine] = _timed(runner, work)
            same = all(r == results["1 worker"] for r in results.values())
            failed |= not same
            serial, pair, on_ray = times["1 worker"], times["joblib x2"], times["Ray 2 nodes"]
            speed = serial / pair
            # Amdahl: S(p) = 1 / (f + (1 - f) / p), solved for the serial fraction f at p = 2;
            # on 32 nodes each task also pays Ray's measured per-task overhead.
            f = min(max((1 / speed - 1 / 2) / (1 - 1 / 2), 0.0), 1.0)
            overhead = max(on_ray - pair, 0.0) / tasks
            rounds = -(-tasks // 32)
            est = serial / (f * serial + (1 - f) * serial * rounds / tasks + overhead * rounds)
            print(f"{name:<26}{serial:>9.1f}s{pair:>10.1f}s{on_ray:>12.1f}s"
                  f"{speed:>16.2f}x{serial / on_ray:>13.2f}x{on_ray / pair:>11.2f}x"
                  f"{'yes' if same else 'NO':>6}{est:>16.1f}x")  # fmt: skip
    finally:
        ray.shutdown()
        cluster.shutdown()
    print("32 nodes (est.): Amdahl with the serial fraction measured at 2 workers, one task per "
          "node per round, plus Ray's measured per-task overhead; a workload of n tasks cannot "
          "use more than n nodes.")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
