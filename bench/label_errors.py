"""mlwarden's confident learning against cleanlab's on the same probabilities and planted flips.

Run by hand: ``.venv/bin/python bench/label_errors.py [--datasets phishing adult german]``.
Needs ``pip install cleanlab`` for the reference side; without it only mlwarden's side prints.
For each dataset and flip rate, labels are flipped with ``flip_labels`` (seeded), ONE set of
out-of-fold probabilities is computed, and the same labels and probabilities go to
``mlwarden.data._label_errors.find_label_issues`` and to ``cleanlab.filter.find_label_issues``
(``prune_by_noise_rate``, ranked by self-confidence). Flagged rows are scored against the flips.
Target: mlwarden's precision and recall within 0.05 of cleanlab's, or better.
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from mlwarden import datasets
from mlwarden.data._label_errors import (
    find_label_issues,
    flip_labels,
    out_of_fold_probabilities,
    precision_recall,
)

TOLERANCE = 0.05
RATES = (0.05, 0.10)


def _features(name: str) -> tuple[pd.DataFrame, np.ndarray]:
    d = datasets.load(name)
    return pd.get_dummies(d.X, dtype=float), d.y.to_numpy()


def _model(name: str) -> Any:
    if name == "german":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=0)


def _cleanlab() -> Any:
    try:
        from cleanlab.filter import find_label_issues as cl_find
    except ImportError:
        return None
    return cl_find


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["phishing", "adult", "german"])
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cl_find = _cleanlab()
    if cl_find is None:
        print("cleanlab is not installed: printing mlwarden's side only")
    header = (
        f"{'dataset':<9} {'rate':>4} {'rows':>6} {'flips':>5} {'oof_s':>6} | "
        f"{'mw_flag':>7} {'mw_P':>5} {'mw_R':>5} {'mw_s':>6} | "
        f"{'cl_flag':>7} {'cl_P':>5} {'cl_R':>5} {'cl_s':>6} | "
        f"{'dP':>6} {'dR':>6} {'jacc':>5} {'ok':>3}"
    )
    print(header)
    print("-" * len(header))
    verdicts: list[bool] = []
    for name in args.datasets:
        X, y = _features(name)
        for rate in RATES:
            noisy, flips = flip_labels(y, rate, seed=args.seed)
            start = time.perf_counter()
            proba, classes = out_of_fold_probabilities(
                _model(name), X, noisy, cv=args.cv, seed=args.seed, n_jobs=1
            )
            oof_s = time.perf_counter() - start

            start = time.perf_counter()
            mine = find_label_issues(noisy, proba, classes).indices
            mw_s = time.perf_counter() - start
            mw_p, mw_r = precision_recall(mine, flips)
            row = (
                f"{name:<9} {rate:>4.2f} {len(y):>6} {len(flips):>5} {oof_s:>6.1f} | "
                f"{len(mine):>7} {mw_p:>5.3f} {mw_r:>5.3f} {mw_s:>6.3f} | "
            )
            if cl_find is None:
                print(row)
                continue

            codes = np.searchsorted(classes, noisy)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = cl_find(
                    codes,
                    proba,
                    filter_by="prune_by_noise_rate",
                    return_indices_ranked_by="self_confidence",
                )
            cl_s = time.perf_counter() - start
            cl_p, cl_r = precision_recall(theirs.tolist(), flips)
            both, either = set(mine) & set(theirs.tolist()), set(mine) | set(theirs.tolist())
            jaccard = len(both) / len(either) if either else 1.0
            ok = mw_p >= cl_p - TOLERANCE and mw_r >= cl_r - TOLERANCE
            verdicts.append(ok)
            print(
                row + f"{len(theirs):>7} {cl_p:>5.3f} {cl_r:>5.3f} {cl_s:>6.3f} | "
                f"{mw_p - cl_p:>+6.3f} {mw_r - cl_r:>+6.3f} {jaccard:>5.3f} "
                f"{'yes' if ok else 'NO':>3}"
            )
    print()
    print(
        f"target: mlwarden precision and recall within {TOLERANCE} of cleanlab's or better "
        "(P, R = precision, recall vs the planted flips; jacc = overlap of the two flagged sets; "
        "*_s = seconds, oof_s = shared out-of-fold probabilities)"
    )
    if verdicts:
        verdict = "PASS" if all(verdicts) else "FAIL"
        print(f"met in {sum(verdicts)} of {len(verdicts)} cases: {verdict}")


if __name__ == "__main__":
    main()
