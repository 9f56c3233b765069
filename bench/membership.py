"""Membership inference side by side: loss, LiRA (offline, online) and RMIA by reference count.

Run by hand: ``.venv/bin/python bench/membership.py [--counts 1,2,4,16,64] [--trees 50]``.
One target model (a 50-tree random forest trained on 2,000 rows of Adult, one-hot encoded);
members are its training rows, non-members 2,000 held-out rows, and the population the
reference models draw their halves from (and RMIA its z rows) is 4,000 further disjoint rows.
Every attack scores the same members and non-members. For each reference-model count it runs
LiRA offline, LiRA online (even counts; per-row variances from 64 models, pooled below) and
RMIA offline (Zarifzadeh et al. 2024; counts up to ``--rmia-max``), and prints TPR at 0.1% and
1% FPR (bootstrap 95% intervals), AUC and wall time. Targets: LiRA's TPR at 0.1% FPR at least
10x the loss attack's; RMIA with <= 2 reference models at least LiRA-online with the most
reference models run, at both FPRs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from mlwarden import datasets
from mlwarden.attacks import MembershipResult, lira, loss_threshold_attack, rmia
from mlwarden.models._adapter import SklearnAdapter


def _row(r: MembershipResult) -> str:
    t1, t01 = r.tpr_at_fpr[0.01], r.tpr_at_fpr[0.001]
    c1, c01 = r.tpr_at_fpr_ci[0.01], r.tpr_at_fpr_ci[0.001]
    return (
        f"{r.variant:<13} {r.n_reference:>4} {r.auc:6.3f} {t01:9.4f} "
        f"{f'[{c01[0]:.3f}, {c01[1]:.3f}]':>15} {t1:8.4f} {f'[{c1[0]:.3f}, {c1[1]:.3f}]':>15} "
        f"{r.queries:8d} {r.wall_time_s:7.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,2,4,16,64")
    parser.add_argument("--rmia-max", type=int, default=16)
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    counts = sorted(int(c) for c in args.counts.split(","))

    data = datasets.load("adult")
    X = pd.get_dummies(data.X, dtype=float).to_numpy()
    y = (data.y == data.positive).to_numpy().astype(int)
    n = args.n_train
    order = np.random.default_rng(args.seed).permutation(len(X))
    train, held_out, population = order[:n], order[n : 2 * n], order[2 * n : 4 * n]

    def make_model() -> RandomForestClassifier:
        return RandomForestClassifier(n_estimators=args.trees, random_state=args.seed, n_jobs=1)

    target = SklearnAdapter(make_model().fit(X[train], y[train]))
    X_cand = np.concatenate([X[train], X[held_out]])
    y_cand = np.concatenate([y[train], y[held_out]])
    is_member = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    print(
        f"Adult, random forest ({args.trees} trees): {n} members, {n} non-members, "
        f"population {len(population)}, reference counts {counts}, seed {args.seed}",
        flush=True,
    )
    shared = (target, X_cand, y_cand, is_member, X[population], y[population], make_model)
    header = (
        f"{'attack':<13} {'refs':>4} {'AUC':>6} {'TPR@0.1%':>9} {'95% CI':>15} "
        f"{'TPR@1%':>8} {'95% CI':>15} {'queries':>8} {'time s':>7}"
    )
    print(header)
    print("-" * len(header), flush=True)
    loss = loss_threshold_attack(
        target, X[train], y[train], X[held_out], y[held_out], seed=args.seed
    )
    print(_row(loss), flush=True)
    results: list[MembershipResult] = []
    for k in counts:
        runs = [lambda: lira(*shared, n_reference=k, seed=args.seed)]  # noqa: B023
        if k % 2 == 0:
            runs.append(lambda: lira(*shared, n_reference=k, online=True, seed=args.seed))  # noqa: B023
        if k <= args.rmia_max:
            runs.append(lambda: rmia(*shared, n_reference=k, seed=args.seed))  # noqa: B023
        for attack in runs:
            results.append(attack())
            print(_row(results[-1]), flush=True)

    def best(variant: str, fpr: float, most: int | None = None) -> float:
        picked = [r for r in results if r.variant == variant]
        if most is not None:
            picked = [r for r in picked if r.n_reference <= most]
        return max((r.tpr_at_fpr[fpr] for r in picked), default=float("nan"))

    lira_best = max(best("lira-offline", 0.001), best("lira-online", 0.001))
    base = loss.tpr_at_fpr[0.001]
    print(
        f"target (LiRA TPR@0.1% FPR >= 10x loss attack's {base:.4f}): "
        f"{'met' if lira_best >= 10 * base else 'NOT met'} ({lira_best:.4f})"
    )
    online = [r for r in results if r.variant == "lira-online"]
    if online:
        top = max(online, key=lambda r: r.n_reference)
        for fpr in (0.001, 0.01):
            mine = best("rmia-offline", fpr, most=2)
            verdict = "met" if mine >= top.tpr_at_fpr[fpr] else "NOT met"
            print(
                f"target (RMIA <= 2 refs >= LiRA-online {top.n_reference} refs at FPR {fpr:g}): "
                f"{verdict} ({mine:.4f} vs {top.tpr_at_fpr[fpr]:.4f})"
            )


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.1f} s")
