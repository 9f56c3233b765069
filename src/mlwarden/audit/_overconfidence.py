"""Overconfidence off the data's distribution (the "circle detector").

A classifier asked about inputs unlike anything it was trained on should not answer with high
confidence (Nguyen, Yosinski, Clune, CVPR 2015; Hendrycks and Gimpel, ICLR 2017). The check
feeds such inputs (rows of other real datasets mapped onto this schema, and optionally uniform
noise over the feature space the schema declares) and measures how well the model's confidence
tells them from held-out rows: the baseline detector of Hendrycks and Gimpel, scored by AUROC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from mlwarden.audit._checks import (
    VERDICT_WORDS,
    CheckContext,
    CheckParams,
    Finding,
    register_check,
    span,
)
from mlwarden.audit._stats import bootstrap_interval, decide
from mlwarden.errors import ParameterError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlwarden.data import TableSchema


def _is_numeric(frame: pd.DataFrame, column: str, schema: TableSchema | None) -> bool:
    import pandas as pd

    if schema is not None and column in schema.columns:
        return schema.columns[column].is_numeric
    return bool(pd.api.types.is_numeric_dtype(frame[column]))


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

    from mlwarden import data as datasets

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


def _foreign_only() -> list[OodSource]:
    return ["foreign"]


class OutOfDistributionConfidence(CheckParams):
    """Parameters of ``ood_confidence``.

    ``min_auroc``: how well the model's top-class confidence must tell held-out rows (more
    confident) from off-distribution rows, as the area under the ROC curve (0.5: no signal at
    all; below 0.5: more confident off the data than on it). ``sources``: rows of other bundled
    datasets mapped onto the schema (``foreign``, in range, foreign joint structure) and/or
    uniform noise over the declared ranges (``uniform``; wide declared ranges make it easy).
    """

    min_auroc: float = Field(gt=0.0, lt=1.0)
    rows: int = Field(default=1000, ge=10)
    sources: list[OodSource] = Field(default_factory=_foreign_only, min_length=1)
    dataset: str | None = None  # the bundled dataset the model was trained on, never used as OOD
    confidence: float = Field(default=0.9, gt=0.0, le=1.0)  # for the reported confident shares

    @model_validator(mode="before")
    @classmethod
    def _max_share_is_gone(cls, data: Any) -> Any:
        if isinstance(data, dict) and "max_share" in data:
            raise ParameterError(
                "max_share was replaced by min_auroc: how well confidence separates held-out "
                "rows from off-distribution rows (tree ensembles answer most inputs, on or off "
                "the data, with high confidence, so a share of confident answers says little)"
            )
        return data


def _auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.ones(len(inside)), np.zeros(len(outside))]
    return float(roc_auc_score(labels, np.r_[inside, outside]))


@register_check("ood_confidence", OutOfDistributionConfidence)
def ood_confidence(params: OutOfDistributionConfidence, ctx: CheckContext) -> Finding:
    """The model's confidence must separate held-out rows from off-distribution rows.

    Measured as the AUROC of the top-class probability, held-out rows against the ``sources``'
    rows pooled, with a bootstrap interval resampling both. A model that answers garbage as
    confidently as real inputs gives a downstream confidence threshold (route uncertain cases
    to a person) nothing to work with. Per source, the AUROC and the share of confident
    answers (top probability at least ``confidence``) are in the details.
    """
    import numpy as np

    from mlwarden.attacks import uniform_noise

    reference = ctx.X_train
    inside = np.max(ctx.model.predict_proba(ctx.X_test), axis=1)
    by_source: dict[str, dict[str, float]] = {}
    outside_parts = []
    for source in params.sources:
        rows = (
            uniform_noise(reference, params.rows, ctx.schema, ctx.seed)
            if source == "uniform"
            else foreign_rows(reference, params.rows, ctx.schema, ctx.seed, params.dataset)
        )
        top = np.max(ctx.model.predict_proba(rows), axis=1)
        outside_parts.append(top)
        by_source[source] = {
            "auroc": _auroc(inside, top),
            "confident_share": float(np.mean(top >= params.confidence)),
        }
    outside = np.concatenate(outside_parts)
    value = _auroc(inside, outside)
    interval = bootstrap_interval(
        lambda i, j: _auroc(inside[i], outside[j]), len(inside), len(outside), seed=ctx.seed
    )
    verdict = decide(value, interval, params.min_auroc, ">=")
    detail = ", ".join(f"{k} {v['auroc']:.3f}" for k, v in by_source.items())
    return Finding(
        check="ood_confidence",
        metric="ood_confidence_auroc",
        value=value,
        threshold=params.min_auroc,
        comparison=">=",
        verdict=verdict,
        n=len(inside) + len(outside),
        interval=interval,
        message=f"confidence separates {len(inside):,} held-out rows from {len(outside):,} "
        f"off-distribution rows at AUROC {value:.3f}{span(interval)} ({detail}; 0.5 is no "
        f"signal): {VERDICT_WORDS[verdict]} the floor {params.min_auroc:g}",
        details={
            "by_source": by_source,
            "held_out_confident_share": float(np.mean(inside >= params.confidence)),
            "confidence": params.confidence,
        },
    )
