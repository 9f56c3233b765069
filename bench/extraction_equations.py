"""Reproduce Tramèr et al. (USENIX Security 2016) Table 1 rows for equation-solving extraction.

Digits (64 features, 10 classes, multinomial logistic regression) and Adult (binary logistic
regression over one-hot categoricals + scaled numerics). Run by hand:
``python bench/extraction_equations.py``.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlwarden import datasets
from mlwarden.attacks._extraction import extract_logistic, extract_logistic_pipeline
from mlwarden.models._adapter import SklearnAdapter

# Adult's categorical features, as its declared schema says.
CATEGORICAL = [
    name
    for name, column in datasets.load("adult").schema.columns.items()
    if not column.is_numeric and name != "income"
]
PAPER = {"Digits LR (multinomial)": 650, "Adult LR (one-hot)": 1485}


def main() -> None:
    rows: list[tuple[str, int, int, float, float | None, float | None, float | None]] = []

    digits = datasets.load("digits")
    X = digits.X.to_numpy(dtype=np.float64)
    y = np.asarray(digits.y)
    lr = LogisticRegression(max_iter=10_000).fit(X, y)
    start = time.perf_counter()
    result = extract_logistic(
        SklearnAdapter(lr), X.shape[1], feature_box=(0.0, 16.0), X_test=X, true_model=lr
    )
    seconds = time.perf_counter() - start
    rows.append(
        (
            "Digits LR (multinomial)",
            PAPER["Digits LR (multinomial)"],
            result.queries_to_extract,
            seconds,
            result.fidelity_test,
            result.fidelity_uniform,
            result.max_abs_weight_error,
        )
    )

    adult = datasets.load("adult")
    frame = adult.frame.sample(5000, random_state=0)
    Xa = frame[list(adult.X.columns)].copy()
    Xa[CATEGORICAL] = Xa[CATEGORICAL].fillna("missing")
    numeric = [c for c in Xa.columns if c not in CATEGORICAL]
    pipe = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("onehot", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
                        ("numeric", StandardScaler(), numeric),
                    ]
                ),
            ),
            ("lr", LogisticRegression(max_iter=10_000)),
        ]
    ).fit(Xa, frame[adult.label])
    start = time.perf_counter()
    result = extract_logistic_pipeline(
        SklearnAdapter(pipe), Xa, CATEGORICAL, X_test=Xa, true_model=pipe
    )
    seconds = time.perf_counter() - start
    rows.append(
        (
            "Adult LR (one-hot)",
            PAPER["Adult LR (one-hot)"],
            result.queries_to_extract,
            seconds,
            result.fidelity_test,
            result.fidelity_uniform,
            result.max_abs_weight_error,
        )
    )

    header = (
        f"{'model':<26}{'paper q':>9}{'our q':>7}{'seconds':>9}"
        f"{'fid test':>10}{'fid unif':>10}{'max |dw|':>11}"
    )
    print(header)
    print("-" * len(header))
    for name, paper, ours, secs, fid_t, fid_u, err in rows:
        print(
            f"{name:<26}{paper:>9}{ours:>7}{secs:>9.3f}"
            f"{fid_t if fid_t is not None else float('nan'):>10.4f}"
            f"{fid_u if fid_u is not None else float('nan'):>10.4f}"
            f"{err if err is not None else float('nan'):>11.2e}"
        )
    print("(seconds: extraction queries + solve + evaluation against the true model)")


if __name__ == "__main__":
    main()
