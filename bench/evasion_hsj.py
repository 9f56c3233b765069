"""mlwarden's HopSkipJump against ART's on a gradient-boosted phishing detector.

Run by hand: ``.venv/bin/python bench/evasion_hsj.py [--points 40] [--budgets 1000 5000]``
(needs ``adversarial-robustness-toolbox``; without it only mlwarden's side prints).
A GradientBoostingClassifier (100 trees, depth 3) is trained on a seeded split of the UCI
phishing data; both attacks try to flip its decision on the same correctly classified test
points, untargeted, L2, inside the box [-1, 1]. mlwarden gets ``budget`` rows per point through
``SklearnAdapter``; ART (``HopSkipJump`` on ``SklearnClassifier``, same ``init_eval``,
``max_eval``) gets the largest ``max_iter`` whose predicted cost fits the same budget, and its
queries are counted by wrapping the model's ``predict_proba``. A last row gives mlwarden exactly
the queries ART actually spent. Failures count as infinitely far. Each side runs ``--repeats``
times (seeds 0, 1, ...; ART's starting noise is unseeded) and the medians are averaged, as one
run's median moves by up to 0.3 between plateaus of the tree ensemble.
Targets: mlwarden's median perturbation <= ART's, in at most half ART's wall time.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.model_selection import train_test_split

from mlwarden import datasets
from mlwarden.attacks._hopskipjump import hop_skip_jump
from mlwarden.models._adapter import SklearnAdapter

INIT_EVALS = 100
MAX_EVALS = 10_000
CLIP = (-1.0, 1.0)
SEED = 0


def _art_max_iter(budget: int, d: int) -> int:
    """Largest ART ``max_iter`` whose expected queries per point fit ``budget``.

    Per point ART spends 1 (its label) + about 2 noise draws + 10 (blend search to 0.001) +
    1 (its closing success check), then per iteration t: a binary search to
    theta = 0.01 / sqrt(d), int(100 * sqrt(t)) gradient probes and about 2 step-size checks.
    """
    search = math.ceil(math.log2(math.sqrt(d) / 0.01))
    spent, t = 14, 0
    while True:
        step = search + min(int(INIT_EVALS * math.sqrt(t + 1)), MAX_EVALS) + 2
        if spent + step > budget:
            return t
        spent += step
        t += 1


def _counting(fn: Callable[[Any], Any], counter: list[int]) -> Callable[[Any], Any]:
    def wrapped(x: Any) -> Any:
        counter[0] += len(x)
        return fn(x)

    return wrapped


def run_art(model: Any, X: np.ndarray, budget: int, seed: int) -> dict[str, Any] | None:
    """ART's HopSkipJump on ``X``; None when ART is not installed."""
    try:
        from art.attacks.evasion import HopSkipJump
        from art.estimators.classification import SklearnClassifier
    except ImportError:
        return None
    counted = copy.deepcopy(model)
    counter = [0]
    counted.predict_proba = _counting(counted.predict_proba, counter)
    classifier = SklearnClassifier(model=counted, clip_values=CLIP)
    max_iter = _art_max_iter(budget, X.shape[1])
    attack = HopSkipJump(
        classifier,
        norm=2,
        max_iter=max_iter,
        max_eval=MAX_EVALS,
        init_eval=INIT_EVALS,
        verbose=False,
    )
    # Seeds ART's gradient probes; its starting noise comes from an unseeded RandomState.
    np.random.seed(seed)
    started = time.perf_counter()
    adv = attack.generate(X)
    wall = time.perf_counter() - started
    success = model.predict(adv) != model.predict(X)
    dist = np.where(success, np.linalg.norm(adv - X, axis=1), np.inf)
    return {"dist": dist, "queries": counter[0], "wall": wall, "note": f"max_iter={max_iter}"}


def run_mlwarden(model: Any, X: np.ndarray, total_budget: int, seed: int) -> dict[str, Any]:
    """mlwarden's HopSkipJump on ``X`` with ``total_budget`` rows for all points."""
    adapter = SklearnAdapter(model)
    started = time.perf_counter()
    result = hop_skip_jump(
        adapter,
        X,
        norm="l2",
        init_evals=INIT_EVALS,
        max_evals=MAX_EVALS,
        clip=CLIP,
        budget=total_budget,
        max_iter=10_000,
        seed=seed,
    )
    wall = time.perf_counter() - started
    dist = np.array([np.inf if p is None else p for p in result.perturbation])
    return {"dist": dist, "queries": adapter.queries, "wall": wall, "note": ""}


def _summary(runs: list[dict[str, Any]], n: int) -> dict[str, Any]:
    medians = [float(np.median(r["dist"])) for r in runs]
    return {
        "median": float(np.mean(medians)),
        "range": f"{min(medians):.3f}-{max(medians):.3f}",
        "mean": float(np.mean([np.mean(r["dist"]) for r in runs])),
        "success": float(np.mean([np.isfinite(r["dist"]).mean() for r in runs])),
        "queries": float(np.mean([r["queries"] for r in runs])) / n,
        "wall": float(np.mean([r["wall"] for r in runs])),
        "note": runs[0]["note"],
    }


def main() -> None:
    """Train, attack with both libraries at each budget, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--budgets", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = datasets.load("phishing")
    X = data.X.to_numpy(dtype=np.float64)
    y = data.y.to_numpy()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=SEED, stratify=y
    )
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=SEED)
    model.fit(X_train, y_train)
    right = model.predict(X_test) == y_test
    points = X_test[right][: args.points]
    n = len(points)
    print(
        f"phishing GBC (100 trees, depth 3), test accuracy {right.mean():.3f}; {n} correctly "
        f"classified test points, {X.shape[1]} features, L2, clip {CLIP}; "
        f"{args.repeats} runs (seeds 0..{args.repeats - 1}) each, averaged"
    )
    header = (
        f"{'budget/pt':>9} {'attack':<22} {'median L2':>9} {'(runs)':>11} {'mean L2':>7} "
        f"{'success':>7} {'queries/pt':>10} {'wall s':>7}  note"
    )
    print(header)
    print("-" * len(header))
    for budget in args.budgets:
        ours, art, ours_at_art = [], [], []
        for seed in range(args.repeats):
            ours.append(run_mlwarden(model, points, budget * n, seed))
            ref = run_art(model, points, budget, seed)
            if ref is not None:
                art.append(ref)
                ours_at_art.append(run_mlwarden(model, points, ref["queries"], seed))
        rows = [("mlwarden", _summary(ours, n))]
        if art:
            rows.append(("ART", _summary(art, n)))
            rows.append(("mlwarden @ ART's spend", _summary(ours_at_art, n)))
        for name, r in rows:
            print(
                f"{budget:>9} {name:<22} {r['median']:>9.4f} {r['range']:>11} {r['mean']:>7.4f} "
                f"{r['success']:>7.2f} {r['queries']:>10.1f} {r['wall']:>7.3f}  {r['note']}"
            )
        if not art:
            print(f"{budget:>9} ART not installed: reference side skipped")
            continue
        mine, theirs = rows[0][1], rows[1][1]
        speed = theirs["wall"] / mine["wall"]
        print(
            f"{budget:>9} targets: median {mine['median']:.4f} <= ART {theirs['median']:.4f}: "
            f"{'met' if mine['median'] <= theirs['median'] else 'MISSED'}; "
            f"wall time ART/mlwarden = {speed:.1f}x (target >= 2x): "
            f"{'met' if speed >= 2.0 else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
