"""Path-finding extraction of the German Credit decision tree (Tramèr et al. 2016, Table 1).

Run by hand: ``.venv/bin/python bench/extraction_tree.py``. Fits a one-hot Pipeline ending in
a DecisionTreeClassifier of 26 leaves (the paper's German Credit tree had 26 leaves) on the
1,000-row German Credit data, then steals it through an API naming the leaf and class of each
query. Target: 100% fidelity with no more than the paper's 1,150 queries.
"""

from __future__ import annotations

import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier

from mlwarden import datasets
from mlwarden.attacks import LeafOracle, TreeSchema, extract_tree

PAPER_QUERIES = 1150
PAPER_LEAVES = 26


def main() -> None:
    d = datasets.load("german")
    X, y = d.X, d.y
    cats = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    schema = TreeSchema.from_frame(X)
    header = f"{'seed':>4} {'leaves':>7} {'queries':>8} {'to 100%':>8} {'paper':>6}"
    header += f" {'seconds':>8} {'fid test':>9} {'fid unif':>9}"
    print(header)
    for seed in range(3):
        model = make_pipeline(
            make_column_transformer(
                (OneHotEncoder(handle_unknown="ignore"), cats), remainder="passthrough"
            ),
            DecisionTreeClassifier(
                max_leaf_nodes=PAPER_LEAVES, min_samples_leaf=5, random_state=seed
            ),
        ).fit(X, y)
        r = extract_tree(LeafOracle(model), schema, X_test=X, seed=seed)
        print(
            f"{seed:>4} {r.leaves_found:>3}/{r.leaves_total:<3} {r.queries:>8} "
            f"{r.queries_to_extract:>8} {PAPER_QUERIES:>6} {r.seconds_to_extract:>8.2f} "
            f"{r.fidelity_test:>9.4f} {r.fidelity_uniform:>9.4f}"
        )


if __name__ == "__main__":
    main()
