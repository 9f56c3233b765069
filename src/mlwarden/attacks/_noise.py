"""Uniform noise over a table's feature space: the queries of an attacker who has no data.

Distillation sends such rows to steal a model (Tramèr et al., USENIX Security 2016, §5), and
the overconfidence audit feeds them as inputs unlike any the model was trained on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from mlwarden.data import TableSchema

__all__ = ["uniform_noise"]


def uniform_noise(
    reference: pd.DataFrame, rows: int, schema: TableSchema | None, seed: int
) -> pd.DataFrame:
    """Rows drawn uniformly over each column's declared (or observed) range or categories."""
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {}
    for column in reference.columns:
        declared = schema.columns.get(column) if schema is not None else None
        numeric = (
            declared.is_numeric
            if declared is not None
            else bool(pd.api.types.is_numeric_dtype(reference[column]))
        )
        if numeric:
            values = reference[column].dropna().to_numpy(dtype=float)
            low = declared.min if declared and declared.min is not None else values.min()
            high = declared.max if declared and declared.max is not None else values.max()
            if declared and declared.categories is not None:
                columns[column] = rng.choice(np.array(declared.categories, dtype=float), rows)
            elif declared is not None and declared.type == "integer":
                columns[column] = rng.integers(int(low), int(high) + 1, rows)
            else:
                columns[column] = rng.uniform(low, high, rows)
        else:
            options = (
                list(declared.categories)
                if declared and declared.categories
                else list(reference[column].dropna().unique())
            )
            columns[column] = rng.choice(np.array(options, dtype=object), rows)
    return pd.DataFrame(columns)[list(reference.columns)]
