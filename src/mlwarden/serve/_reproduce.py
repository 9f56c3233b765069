"""Reproduce and explain a past decision from the decision log.

The logged input is run again through the exact model version that answered (verified, and
its model hash checked against the one logged), and each row's answer is explained by
occlusion: every feature in turn is replaced by its typical training value (median, or the
most frequent category) and the change in the probability of the answered class is that
feature's contribution. A feature whose replacement moves the probability most is what the
decision rested on. Beside occlusion, each row gets its SHAP values for the answered class
(:class:`mlwarden.audit.Explainer`, training rows as background): unlike occlusion they add
up, with the base value, to the explained output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from mlwarden.errors import RecordNotFoundError, SignatureError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mlwarden.lineage import LineageStore
    from mlwarden.serve._decisions import DecisionLog
    from mlwarden.serve._runtime import ServedModel


class Contribution(BaseModel):
    """How much one feature's value moved the answered class's probability."""

    feature: str
    value: Any
    typical: Any
    delta: float


class ShapValue(BaseModel):
    """One feature's SHAP value for the answered class."""

    feature: str
    value: Any
    shap: float


class RowShap(BaseModel):
    """A row's SHAP values (largest first): base value + all of them == the explained output."""

    method: str
    output: str
    base_value: float
    model_output: float
    values: list[ShapValue]


class ReproducedRow(BaseModel):
    """One row of a past request: what was logged, what the model says now, and why."""

    logged_label: Any
    label: Any
    probability: float
    matches: bool
    contributions: list[Contribution]
    shap: RowShap | None = None


class Reproduction(BaseModel):
    """A past decision run again on the exact version that answered it."""

    request_id: str
    endpoint: str = "predict"
    model_ref: str
    model_sha256: str
    client: str
    created_at: str
    rows: list[ReproducedRow]
    feedback: list[dict[str, Any]]

    @property
    def reproduced(self) -> bool:
        """Every row got the label it was served."""
        return all(row.matches for row in self.rows)


def _typical(reference: pd.DataFrame) -> dict[str, Any]:
    import pandas as pd

    values: dict[str, Any] = {}
    for column in reference.columns:
        series = reference[column].dropna()
        if pd.api.types.is_numeric_dtype(series) and series.nunique() > 10:
            median = float(series.median())
            integer = pd.api.types.is_integer_dtype(series)
            values[column] = round(median) if integer else median
        else:
            values[column] = _plain(series.mode().iloc[0]) if len(series) else None
    return values


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (for JSON)."""
    return value.item() if hasattr(value, "item") else value


def _row_shaps(
    served: ServedModel, reference: pd.DataFrame, frame: pd.DataFrame, answered: np.ndarray
) -> list[RowShap | None]:
    """SHAP values of each row for the class it was answered (None for an early-exit network)."""
    from mlwarden.audit import Explainer

    if served.adapter is None:
        return [None] * len(frame)
    rows = served.imputation.apply(frame) if served.imputation is not None else frame
    found: list[RowShap | None] = [None] * len(frame)
    for index in sorted(set(answered.tolist())):
        picked = [i for i in range(len(frame)) if answered[i] == index]
        explainer = Explainer(served.adapter, reference, served.classes[index])
        e = explainer.explain(rows.iloc[picked])
        for i, values, output in zip(picked, e.values, e.outputs, strict=True):
            order = sorted(range(len(values)), key=lambda j: -abs(values[j]))
            found[i] = RowShap(
                method=e.method,
                output=e.output,
                base_value=e.base_value,
                model_output=output,
                values=[
                    ShapValue(
                        feature=e.features[j],
                        value=_plain(frame.iloc[i][e.features[j]]),
                        shap=values[j],
                    )
                    for j in order
                ],
            )
    return found


def reproduce_decision(
    store: LineageStore, log: DecisionLog, request_id: str, top: int = 5
) -> Reproduction:
    """Run a logged request again on its model version and explain each row's answer."""
    import numpy as np
    import pandas as pd

    from mlwarden.serve._runtime import load_served, training_reference

    record = log.get(request_id)
    if record is None:
        raise RecordNotFoundError(f"no decision {request_id!r} in the decision log")
    served = load_served(store, record.model_ref)
    if served.version.manifest.model_sha256 != record.model_sha256:
        raise SignatureError(
            f"{record.model_ref} now has model {served.version.manifest.model_sha256[:12]}, "
            f"but the decision was made by {record.model_sha256[:12]}"
        )
    schema, reference = training_reference(store, served)
    typical = _typical(reference)
    frame = pd.DataFrame(record.input, columns=schema.features)
    proba = served.predict_proba(frame)
    classes = served.classes
    answered = proba.argmax(axis=1)
    logged = (
        [o for o in record.output if isinstance(o, dict)] if isinstance(record.output, list) else []
    )
    shaps = _row_shaps(served, reference, frame, answered)
    rows: list[ReproducedRow] = []
    for i in range(len(frame)):
        occluded = pd.concat([frame.iloc[[i]]] * len(schema.features), ignore_index=True)
        for j, column in enumerate(schema.features):
            occluded.loc[j, column] = typical[column]
        moved = served.predict_proba(occluded)[:, answered[i]]
        deltas = proba[i, answered[i]] - moved
        order = np.argsort(-np.abs(deltas))[:top]
        logged_label = logged[i].get("label") if i < len(logged) else None
        label = _plain(classes[answered[i]])
        rows.append(
            ReproducedRow(
                logged_label=logged_label,
                label=label,
                probability=float(proba[i, answered[i]]),
                matches=str(logged_label) == str(label),
                contributions=[
                    Contribution(
                        feature=schema.features[j],
                        value=_plain(frame.iloc[i][schema.features[j]]),
                        typical=typical[schema.features[j]],
                        delta=float(deltas[j]),
                    )
                    for j in order
                ],
                shap=shaps[i],
            )
        )
    return Reproduction(
        request_id=record.request_id,
        endpoint=record.endpoint,
        model_ref=record.model_ref,
        model_sha256=record.model_sha256,
        client=record.client,
        created_at=record.created_at.isoformat(),
        rows=rows,
        feedback=[f.model_dump(mode="json") for f in record.feedback],
    )
