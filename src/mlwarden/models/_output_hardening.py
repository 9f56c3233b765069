"""Output hardening: what a prediction API reveals per query, as a wrapper adapter.

Reference: Florian Tramèr, Fan Zhang, Ari Juels, Michael K. Reiter, Thomas Ristenpart,
"Stealing Machine Learning Models via Prediction APIs", USENIX Security 2016, §8
(countermeasures: rounding confidences, returning the class label only).

A served model can answer with every class probability, with probabilities rounded to a few
decimals, with the top class and its confidence only, or with the label only. Each mode gives
an extraction attacker less to work with; :func:`mlwarden.attacks.hardening_cost` measures
how much more it costs them. The model server serves :meth:`HardenedModel.outputs`; attacks
see :meth:`HardenedModel.predict_proba`, which rebuilds from those outputs what an attacker
can and nothing more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import numpy as np

    from mlwarden.models._adapter import ModelAdapter

__all__ = [
    "HardenedModel",
    "HardenedOutput",
    "OutputHardening",
    "OutputMode",
    "harden_probabilities",
    "hardened_outputs",
]

OutputMode = Literal["probabilities", "rounded", "top1", "label"]
"""What the API returns per row: every probability, rounded ones, the top one, or the label."""


class OutputHardening(BaseModel):
    """How a served model's outputs are hardened (Tramèr et al. 2016, §8).

    ``mode``:

    - ``"probabilities"``: every class probability, unchanged;
    - ``"rounded"``: every class probability rounded to ``decimals`` decimals;
    - ``"top1"``: the top class and its confidence rounded to ``decimals`` decimals; the
      other classes' probabilities are not returned;
    - ``"label"``: the top class only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: OutputMode = "probabilities"
    decimals: int = Field(default=2, ge=0, le=15)


class HardenedOutput(BaseModel):
    """One row of what the API returns; fields a mode hides are None.

    ``probabilities`` is in the column order of ``classes_`` (``"probabilities"`` and
    ``"rounded"`` modes); ``confidence`` is the top class's probability (``"top1"`` mode);
    ``label`` is always set.
    """

    label: Any
    probabilities: list[float] | None = None
    confidence: float | None = None


def harden_probabilities(
    proba: np.ndarray, hardening: OutputHardening
) -> tuple[np.ndarray, np.ndarray]:
    """The top-class index of each row and the probability rows an attacker can rebuild."""
    import numpy as np

    top = np.argmax(proba, axis=1)
    mode, decimals = hardening.mode, hardening.decimals
    if mode == "probabilities":
        return top, proba
    if mode == "rounded":
        return top, np.round(proba, decimals)
    rows = np.arange(len(proba))
    k = proba.shape[1]
    if mode == "top1":
        confidence = np.round(proba[rows, top], decimals)
        rest = (1.0 - confidence) / (k - 1) if k > 1 else np.zeros_like(confidence)
        visible = np.repeat(rest[:, None], k, axis=1)
        visible[rows, top] = confidence
        return top, visible
    visible = np.zeros_like(proba)
    visible[rows, top] = 1.0
    return top, visible


def hardened_outputs(
    top: np.ndarray, visible: np.ndarray, classes: np.ndarray, mode: OutputMode
) -> list[HardenedOutput]:
    """The API's answer per row, from :func:`harden_probabilities`' result."""
    import numpy as np

    labels = np.asarray(classes)[top].tolist()
    if mode in ("probabilities", "rounded"):
        return [
            HardenedOutput(label=label, probabilities=row)
            for label, row in zip(labels, visible.tolist(), strict=True)
        ]
    if mode == "top1":
        confidences = visible[np.arange(len(top)), top].tolist()
        return [
            HardenedOutput(label=label, confidence=confidence)
            for label, confidence in zip(labels, confidences, strict=True)
        ]
    return [HardenedOutput(label=label) for label in labels]


class HardenedModel:
    """A model adapter that answers as an API hardened with ``hardening`` would.

    Queries go to the wrapped ``model`` (one call per call here), so its count and budget
    are the ones that apply. :meth:`predict` returns the wrapped model's labels in every mode
    (an API always returns at least the label); the label in :meth:`outputs` is the argmax of
    the wrapped model's probabilities, the same for any adapter built on ``MeteredModel``.
    :meth:`predict_proba` returns what an attacker can rebuild from :meth:`outputs` and no more:

    - ``"probabilities"``: the probabilities;
    - ``"rounded"``: the rounded probabilities as returned (their rows need not sum to 1);
    - ``"top1"``: the returned (rounded) confidence on the top class and the remainder
      ``(1 - confidence) / (k - 1)`` spread evenly over the other ``k - 1`` classes, the
      maximum-entropy completion; for two classes this is the full (rounded) answer. Where
      rounding brings the confidence below ``1 / k`` (three or more classes), the row's argmax
      may differ from :meth:`predict`;
    - ``"label"``: a one-hot row on the label.

    Parameters
    ----------
    model : ModelAdapter
        The model served.
    hardening : OutputHardening
        The output mode and its rounding.
    """

    def __init__(self, model: ModelAdapter, hardening: OutputHardening | None = None) -> None:
        self.model = model
        self.hardening = hardening if hardening is not None else OutputHardening()

    @property
    def classes_(self) -> np.ndarray:
        """Class labels in the column order of :meth:`predict_proba`."""
        import numpy as np

        return np.asarray(self.model.classes_)

    @property
    def queries(self) -> int:
        """Rows queried so far, as the wrapped model counts them."""
        return self.model.queries

    @property
    def budget(self) -> int | None:
        """The wrapped model's query budget, if it declares one."""
        budget = getattr(self.model, "budget", None)
        return budget if isinstance(budget, int) else None

    @property
    def mode(self) -> OutputMode:
        """The output mode."""
        return self.hardening.mode

    def _answer(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Query the model once: the true top-class index and the hardened probability rows."""
        import numpy as np

        proba = np.asarray(self.model.predict_proba(X), dtype=np.float64)
        return harden_probabilities(proba, self.hardening)

    def outputs(self, X: Any) -> list[HardenedOutput]:
        """What the API returns for each row of ``X`` (one query per row)."""
        top, visible = self._answer(X)
        return hardened_outputs(top, visible, self.classes_, self.hardening.mode)

    def predict_proba(self, X: Any) -> np.ndarray:
        """What an attacker can rebuild of the class probabilities from the outputs."""
        return self._answer(X)[1]

    def predict(self, X: Any) -> np.ndarray:
        """The wrapped model's labels, unchanged: every mode reveals the label."""
        import numpy as np

        return np.asarray(self.model.predict(X))

    def __repr__(self) -> str:
        h = self.hardening
        return f"HardenedModel({self.model!r}, mode={h.mode!r}, decimals={h.decimals})"
