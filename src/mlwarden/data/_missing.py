"""Missing-value imputation fitted on training rows only, recorded, and reapplied unchanged.

Fitting on the training split alone keeps test rows from leaking into the fill values; the
fitted values are an artifact of the model version, so a server fills gaps exactly as
training did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from mlwarden.data._schema import Scalar
from mlwarden.data._validate import MissingPolicy
from mlwarden.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

IMPUTATION_FORMAT = 1


class ColumnImputation(BaseModel):
    """One column's strategy and the value it was fitted to."""

    column: str
    strategy: Literal["mean", "median", "most_frequent", "constant"]
    value: Scalar
    fitted_on_rows: int


class Imputation(BaseModel):
    """The fitted fill values of every imputed column."""

    format: int = IMPUTATION_FORMAT
    columns: list[ColumnImputation]

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``frame`` with each imputed column's gaps filled by its fitted value."""
        missing = [c.column for c in self.columns if c.column not in frame.columns]
        if missing:
            raise DataError(f"cannot impute: the table lacks column(s) {missing}")
        filled = frame.copy()
        for c in self.columns:
            filled[c.column] = filled[c.column].fillna(c.value)
        return filled


def fit_imputation(frame: pd.DataFrame, policies: Mapping[str, MissingPolicy]) -> Imputation:
    """Fit the fill value of every column whose policy is ``impute``, on ``frame`` only."""
    import pandas as pd

    fitted: list[ColumnImputation] = []
    for column, policy in policies.items():
        if policy.action != "impute" or policy.strategy is None:
            continue
        if column not in frame.columns:
            raise DataError(f"missing-value policy names column {column!r}, not in the table")
        values = frame[column].dropna()
        if policy.strategy == "constant":
            value: Scalar = policy.value if policy.value is not None else ""
        elif values.empty:
            raise DataError(
                f"cannot fit {policy.strategy} imputation for {column!r}: every training value "
                "is missing; use strategy 'constant' with a value"
            )
        elif policy.strategy in ("mean", "median"):
            if not pd.api.types.is_numeric_dtype(values):
                raise DataError(
                    f"strategy {policy.strategy!r} needs a numeric column; {column!r} holds "
                    f"{values.dtype}; use most_frequent or constant"
                )
            value = float(values.mean() if policy.strategy == "mean" else values.median())
        else:
            top = values.value_counts(sort=True)
            tied = top[top == top.iloc[0]].index
            value = _scalar(sorted(tied, key=str)[0])  # ties broken by text order: reproducible
        fitted.append(
            ColumnImputation(
                column=column, strategy=policy.strategy, value=value, fitted_on_rows=len(values)
            )
        )
    return Imputation(columns=fitted)


def _scalar(value: object) -> Scalar:
    item = getattr(value, "item", None)
    result = item() if callable(item) else value
    if not isinstance(result, int | float | str | bool):
        raise DataError(f"cannot record fill value {value!r} of type {type(value).__name__}")
    return result
