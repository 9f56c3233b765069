"""Overconfidence off the data's distribution (the "circle detector").

A classifier asked about inputs unlike anything it was trained on should not answer with high
confidence (Nguyen, Yosinski, Clune, CVPR 2015; Hendrycks and Gimpel, ICLR 2017). The check
feeds two kinds of such inputs: uniform noise over the feature space the schema declares, and
rows of other real datasets mapped onto this schema, and measures how many get a confident
answer.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from mlwarden.audit._checks import CheckContext, CheckParams, Finding, register_check

if TYPE_CHECKING:
    import pandas as pd

    from mlwarden.data import TableSchema


def _is_numeric(frame: pd.DataFrame, column: str, schema: TableSchema | None) -> bool:
    import pandas as pd

    if schema is not None and column in schema.columns:
        return schema.columns[column].is_numeric
    return bool(pd.api.types.is_numeric_dtype(frame[column]))


def uniform_noise(
    reference: pd.DataFrame, rows: int, schema: TableSchema | None, seed: int
) -> pd.DataFrame:
    """Rows drawn uniformly over each column's declared (or observed) range or categories."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {}
    for column in reference.columns:
        declared = schema.columns.get(column) if schema is not None else None
        if _is_numeric(reference, column, schema):
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


def foreign_rows(
    reference: pd.DataFrame, rows: int, schema: TableSchema | None, seed: int, exclude: str | None
) -> pd.DataFrame:
    """Rows of other bundled datasets, mapped column by column onto this table's schema.

    The i-th numeric column of this table takes the i-th numeric column of the other dataset
    (cycling), rescaled by rank onto this column's observed quantiles, so values are in range
    but their joint structure is foreign; categorical columns take the other dataset's
    categorical codes modulo this column's categories.
    """
    import numpy as np
    import pandas as pd

    from mlwarden import datasets

    rng = np.random.default_rng(seed)
    pools = []
    for name in ("digits", "adult", "german", "phishing"):
        frame = datasets.load(name).X
        if name == exclude or set(frame.columns) == set(reference.columns):
            continue  # the model's own data is not foreign to it
        pools.append(frame.iloc[rng.integers(0, len(frame), rows)].reset_index(drop=True))
    source = pd.concat(pools, ignore_index=True).iloc[rng.permutation(rows * len(pools))[:rows]]
    source = source.reset_index(drop=True)
    numeric_source = [c for c in source.columns if pd.api.types.is_numeric_dtype(source[c])]
    other_source = [c for c in source.columns if c not in numeric_source]
    columns: dict[str, object] = {}
    n_seen = c_seen = 0
    for column in reference.columns:
        if _is_numeric(reference, column, schema):
            donor = source[numeric_source[n_seen % len(numeric_source)]]
            n_seen += 1
            ranks = donor.rank(pct=True, method="average").fillna(0.5).to_numpy()
            observed = reference[column].dropna().to_numpy(dtype=float)
            columns[column] = np.quantile(observed, np.clip(ranks, 0, 1), method="inverted_cdf")
        else:
            labels = sorted(reference[column].dropna().astype(str).unique())
            options = np.array(labels, dtype=object)
            if other_source:
                category_donor = source[other_source[c_seen % len(other_source)]]
                codes = pd.factorize(category_donor)[0] % len(options)
            else:
                codes = rng.integers(0, len(options), rows)
            c_seen += 1
            columns[column] = options[np.maximum(codes, 0)]
    return pd.DataFrame(columns)[list(reference.columns)]


OodSource = Literal["uniform", "foreign"]
_SOURCES: tuple[OodSource, ...] = ("uniform", "foreign")


class OutOfDistributionConfidence(CheckParams):
    """Parameters of ``ood_confidence``."""

    confidence: float = Field(default=0.9, gt=0.0, le=1.0)
    max_share: float = Field(ge=0.0, le=1.0)
    rows: int = Field(default=1000, ge=10)
    sources: list[OodSource] = Field(default_factory=lambda: list(_SOURCES), min_length=1)
    dataset: str | None = None  # the bundled dataset the model was trained on, never used as OOD


@register_check("ood_confidence", OutOfDistributionConfidence)
def ood_confidence(params: OutOfDistributionConfidence, ctx: CheckContext) -> Finding:
    """At most ``max_share`` of off-distribution inputs may get a confident answer.

    Confident means the top class probability is at least ``confidence``. The share is taken
    over both sources together; each source's share is in the details.
    """
    import numpy as np

    start, before = time.perf_counter(), ctx.model.queries
    reference = ctx.X_train
    shares: dict[str, float] = {}
    confident_total = 0
    for source in params.sources:
        rows = (
            uniform_noise(reference, params.rows, ctx.schema, ctx.seed)
            if source == "uniform"
            else foreign_rows(reference, params.rows, ctx.schema, ctx.seed, params.dataset)
        )
        top = np.max(ctx.model.predict_proba(rows), axis=1)
        confident = int(np.sum(top >= params.confidence))
        shares[source] = confident / len(rows)
        confident_total += confident
    share = confident_total / (params.rows * len(params.sources))
    passed = share <= params.max_share
    detail = ", ".join(f"{k} {v:.1%}" for k, v in shares.items())
    return Finding(
        check="ood_confidence",
        metric="ood_confident_share",
        value=share,
        threshold=params.max_share,
        comparison="<=",
        passed=passed,
        message=f"{share:.1%} of off-distribution inputs got confidence >= {params.confidence} "
        f"({detail}; {'<=' if passed else '>'} {params.max_share:.0%} allowed)",
        queries=ctx.model.queries - before,
        wall_time_s=time.perf_counter() - start,
        details={"by_source": shares, "confidence": params.confidence},
    )
