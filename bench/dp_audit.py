"""One-run privacy audit of DP-SGD (Opacus) and non-DP models on Adult: claimed vs empirical eps.

Run by hand: ``.venv/bin/python bench/dp_audit.py [--n-audit 1000] [--attack loss]``.
Features: Adult with numeric columns standardised and categories one-hot encoded (the
preprocessing mlwarden's pipeline puts before the model). Targets: the non-private twin of
:class:`~mlwarden.models._dp.DPSGDClassifier` (same network, Poisson batches, clipping and SGD,
no noise), DPSGDClassifier at epsilon 0.5, 1, 4 and 8, and a 100-tree random forest (overfits).
For each, :func:`mlwarden.attacks.privacy_audit` draws ``--n-audit`` audit rows
(each in training with probability 1/2) beside ``--n-train`` base rows, scores them with the
chosen attack, and the table shows the claimed epsilon, the one-run 95% lower bound (delta: the
model's own), AUC, TPR at 1% and 0.1% FPR, test accuracy and wall time. A sound DP
implementation never shows a lower bound above its claim (except with 5% chance). Needs Opacus
(``pip install 'mlwarden[dp]'``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from mlwarden import datasets
from mlwarden.attacks import PrivacyAuditResult, privacy_audit
from mlwarden.models._dp import DPSGDClassifier


def features() -> tuple[np.ndarray, np.ndarray]:
    data = datasets.load("adult")
    numeric = data.X.select_dtypes("number")
    scaled = (numeric - numeric.mean()) / numeric.std()
    categorical = pd.get_dummies(data.X.select_dtypes(exclude="number"), dtype=float)
    X = pd.concat([scaled, categorical], axis=1).to_numpy(dtype=np.float32)
    y = (data.y == data.positive).to_numpy().astype(int)
    return X, y


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n-audit", type=int, default=1000)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=5000)
    parser.add_argument("--attack", choices=["loss", "lira"], default="loss")
    parser.add_argument("--n-reference", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    X, y = features()

    def dpsgd(epsilon: float | None) -> Callable[[], Any]:
        return lambda: DPSGDClassifier(
            epsilon=epsilon,
            hidden=args.hidden,
            epochs=args.epochs,
            batch_size=64,
            lr=0.5,
            max_grad_norm=1.0,
            random_state=args.seed,
        )

    models: list[tuple[str, Callable[[], Any]]] = [("dpsgd non-private", dpsgd(None))]
    models += [(f"dpsgd eps={eps:g}", dpsgd(eps)) for eps in (0.5, 1.0, 4.0, 8.0)]
    models.append(
        (
            "random forest",
            lambda: RandomForestClassifier(n_estimators=100, random_state=args.seed, n_jobs=1),
        )
    )

    print(
        f"Adult: {args.n_audit} audit rows (p = 1/2), {args.n_train} base training rows, "
        f"{args.n_test} test rows, {args.attack} attack"
        + (f" ({args.n_reference} reference models)" if args.attack == "lira" else "")
        + f"; DP-SGD: hidden {args.hidden}, {args.epochs} epochs, batch 64, clip 1.0, "
        f"seed {args.seed}",
        flush=True,
    )
    header = (
        f"{'model':<18} {'claimed':>7} {'eps LB':>7} {'k+/k-':>9} {'AUC':>6} "
        f"{'TPR@1%':>7} {'TPR@.1%':>7} {'test acc':>8} {'time s':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, make in models:
        result: PrivacyAuditResult = privacy_audit(
            make,
            X,
            y,
            n_audit=args.n_audit,
            attack=args.attack,
            n_train=args.n_train,
            n_test=args.n_test,
            n_reference=args.n_reference,
            seed=args.seed,
        )
        claimed = "-" if result.claimed_epsilon is None else f"{result.claimed_epsilon:.3g}"
        guess = f"{result.bound.k_pos}/{result.bound.k_neg}"
        print(
            f"{name:<18} {claimed:>7} {result.epsilon_lower_bound:>7.3f} "
            f"{guess:>9} {result.auc:>6.3f} {result.tpr_at_fpr[0.01]:>7.3f} "
            f"{result.tpr_at_fpr[0.001]:>7.3f} {result.test_accuracy or 0.0:>8.3f} "
            f"{result.wall_time_s:>7.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
