"""Extraction by distillation, and what output hardening costs the thief (Tramèr et al. 2016 §8).

Run by hand: ``.venv/bin/python bench/extraction_hardening.py``. Two targets:

- Adult: one-hot categoricals + scaled numerics + logistic regression;
- Phishing: gradient boosting (scikit-learn's ``GradientBoostingClassifier``).

For each it prints the distillation fidelity curve (queries 100 ... 20,000, full probabilities)
with uniform queries over the schema and with "public" queries (a disjoint slice of the same
data set, standing in for a public data set of the domain), then the hardening table: queries
to 90/95/99% test fidelity per output mode and attack, and the cost ratio against full
probabilities; and wall times. Takes a few minutes on two cores.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlwarden import datasets
from mlwarden.attacks import HardeningCostTable, hardening_cost
from mlwarden.attacks._distillation import DEFAULT_BUDGETS, extract_distillation
from mlwarden.models._adapter import SklearnAdapter

TARGETS = (0.9, 0.95, 0.99)


def _split(name: str, n_train: int, n_test: int, n_public: int) -> dict[str, Any]:
    data = datasets.load(name)
    X = data.X.copy()
    categorical = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    X[categorical] = X[categorical].fillna("missing")
    order = np.random.default_rng(0).permutation(len(X))
    cut = np.cumsum([n_train, n_test, n_public])
    part = [order[: cut[0]], order[cut[0] : cut[1]], order[cut[1] : cut[2]]]
    return {
        "schema": data.schema,
        "categorical": categorical,
        "X_train": X.iloc[part[0]].reset_index(drop=True),
        "y_train": data.y.iloc[part[0]].reset_index(drop=True),
        "X_test": X.iloc[part[1]].reset_index(drop=True),
        "y_test": data.y.iloc[part[1]].reset_index(drop=True),
        "X_public": X.iloc[part[2]].reset_index(drop=True),
    }


def _adult() -> tuple[str, Any, dict[str, Any]]:
    s = _split("adult", 8000, 2000, 10_000)
    numeric = [c for c in s["X_train"].columns if c not in s["categorical"]]
    prep = ColumnTransformer(
        [
            ("onehot", OneHotEncoder(handle_unknown="ignore"), s["categorical"]),
            ("numeric", StandardScaler(), numeric),
        ]
    )
    model = Pipeline([("prep", prep), ("lr", LogisticRegression(max_iter=5000))])
    return "Adult LR (one-hot)", model.fit(s["X_train"], s["y_train"]), s


def _phishing() -> tuple[str, Any, dict[str, Any]]:
    s = _split("phishing", 4000, 2000, 5000)
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0)
    return "Phishing GB", model.fit(s["X_train"], s["y_train"]), s


def _fmt(value: float | None, width: int = 7, digits: int = 3) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def _curves(name: str, model: Any, s: dict[str, Any]) -> None:
    print(f"\n== {name}: distillation fidelity curve (full probabilities) ==")
    print(f"{'source':<8}{'queries':>8}{'fid test':>9}{'fid unif':>9}{'acc test':>9}{'fit s':>7}")
    for source in ("uniform", "public"):
        start = time.perf_counter()
        result = extract_distillation(
            SklearnAdapter(model),
            s["X_train"],
            X_test=s["X_test"],
            y_test=s["y_test"],
            schema=s["schema"],
            source=source,
            X_public=s["X_public"],
            budgets=DEFAULT_BUDGETS,
            true_model=model,
        )
        for p in result.curve:
            print(
                f"{source:<8}{p.budget:>8}{_fmt(p.fidelity_test, 9)}{_fmt(p.fidelity_uniform, 9)}"
                f"{_fmt(p.accuracy_test, 9)}{p.fit_time_s:>7.2f}"
            )
        print(f"{source:<8} queries {result.queries}, wall {time.perf_counter() - start:.1f} s")


def _table(name: str, table: HardeningCostTable, seconds: float) -> None:
    print(f"\n== {name}: output hardening, queries to test fidelity (x cost vs probabilities) ==")
    head = f"{'mode':<14}{'attack':<17}" + "".join(f"{f'to {t:.0%}':>15}" for t in TARGETS)
    print(head + f"{'final':>7}{'spent':>8}{'wall s':>8}")
    for row in table.rows:
        if not row.applicable:
            print(f"{row.mode:<14}{row.attack:<17}n/a: {row.reason}")
            continue
        cells = ""
        for cost in row.costs:
            q = "-" if cost.queries is None else str(cost.queries)
            r = "" if cost.cost_ratio is None else f" ({cost.cost_ratio:.1f}x)"
            cells += f"{q + r:>15}"
        print(
            f"{row.mode:<14}{row.attack:<17}{cells}{_fmt(row.final_fidelity)}"
            f"{row.queries_spent:>8}{row.wall_time_s:>8.1f}"
        )
        if row.reason:
            print(f"{'':<31}note: {row.reason}")
    print("best attack per mode vs best on full probabilities:")
    for mode in dict.fromkeys(row.mode for row in table.rows):
        ratios = [table.cost_ratio(mode, t) for t in TARGETS]
        cheapest = [table.cheapest(mode, t) for t in TARGETS]
        print(
            f"  {mode:<14}"
            + "".join(
                f"{'-' if q is None else q:>8}{'' if r is None else f' ({r:.1f}x)':>10}"
                for q, r in zip(cheapest, ratios, strict=True)
            )
        )
    print(f"(hardening table wall time {seconds:.1f} s)")


def main() -> None:
    total = time.perf_counter()
    for build in (_adult, _phishing):
        start = time.perf_counter()
        name, model, s = build()
        print(f"\n# {name}: trained in {time.perf_counter() - start:.1f} s")
        _curves(name, model, s)
        start = time.perf_counter()
        table = hardening_cost(
            model,
            s["X_train"],
            s["X_test"],
            y_test=s["y_test"],
            schema=s["schema"],
            categorical=s["categorical"],
            budgets=DEFAULT_BUDGETS,
            fidelity_targets=TARGETS,
        )
        _table(name, table, time.perf_counter() - start)
    print(f"\ntotal wall time {time.perf_counter() - total:.1f} s")


if __name__ == "__main__":
    main()
