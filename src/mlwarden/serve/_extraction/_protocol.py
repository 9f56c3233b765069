"""The contract every extraction detector honours, and the benign traffic it is fitted on.

One shape for all, as scikit-learn's estimators share ``fit``: a detector is fitted once on
:class:`BenignTraffic` (everything any detector learns from: the feature space, encoded
training rows, encoded held-out rows and the model's answers to them), then judges each
client after each query. :func:`mlwarden.testing.check_detector` checks the contract.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, Self, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlwarden.errors import DataError
from mlwarden.serve._extraction._features import FeatureSpace
from mlwarden.serve._verdict import Verdict

__all__ = ["BenignTraffic", "Detector", "Pattern", "Stream", "encoded_row"]

FloatArray = NDArray[np.float64]

Stream = Iterable[tuple[ArrayLike, ArrayLike]]
"""A client's queries as (encoded row, answered probabilities) pairs, in arrival order."""

Pattern = Literal["uniform", "boundary", "perturbation"]
"""Synthetic extraction query patterns a detector may claim to catch (``Detector.catches``):
``"uniform"``, rows drawn uniformly over the data's range (distillation from noise, Tramèr et
al. 2016; Orekondy et al. 2019); ``"boundary"``, rows the model answers with a small top-1
margin (active-learning thieves); ``"perturbation"``, small steps around a few seed rows
(Papernot et al.'s Jacobian augmentation, PRADA's target)."""


def encoded_row(x: ArrayLike, n_features: int | None) -> FloatArray:
    """``x`` as one flat float row, refused unless it has ``n_features`` values (if known)."""
    vector = np.asarray(x, dtype=np.float64).reshape(-1)
    if n_features is not None and vector.shape[0] != n_features:
        raise DataError(f"expected an encoded row of {n_features} features, got {vector.shape[0]}")
    return vector


@dataclass(frozen=True, eq=False)
class BenignTraffic:
    """Benign traffic in the detectors' feature space: what every detector's ``fit`` reads.

    Parameters
    ----------
    space : FeatureSpace
        The space every row is encoded in.
    train : array of shape (n, space.n_features)
        Encoded training rows (the data manifold).
    held_out : array of shape (m, space.n_features)
        Encoded benign rows the model never saw (the benign rates are measured on them).
    proba : array of shape (m, k)
        The model's probabilities on the held-out rows.
    """

    space: FeatureSpace
    train: FloatArray
    held_out: FloatArray
    proba: FloatArray

    def __post_init__(self) -> None:
        width = self.space.n_features
        for field in ("train", "held_out", "proba"):
            value = np.asarray(getattr(self, field), dtype=np.float64)
            if value.ndim != 2:
                raise DataError(f"{field} must be a matrix, got {value.ndim} dimensions")
            object.__setattr__(self, field, value)
        if self.train.shape[1] != width or self.held_out.shape[1] != width:
            raise DataError(f"train and held_out must be matrices of {width} encoded features")
        if len(self.proba) != len(self.held_out):
            raise DataError(
                f"proba needs one answer per held-out row: {len(self.proba)} answers, "
                f"{len(self.held_out)} rows"
            )


@runtime_checkable
class Detector(Protocol):
    """An extraction detector: fitted on benign traffic, then judging clients query by query.

    ``name`` names it in verdicts; ``catches`` the synthetic :data:`Pattern` s it should alarm
    on. ``fit`` returns the detector itself; ``observe_answer`` records one encoded query and
    the model's probabilities and returns the :class:`Verdict` on that client (an alarm when
    the client looks like a thief); a client's state never affects another's, and ``reset``
    forgets one. Bad input (a row of the wrong width) raises a
    :class:`~mlwarden.errors.MlwardenError`.
    """

    name: str

    @property
    def catches(self) -> frozenset[Pattern]:
        """The synthetic extraction patterns this detector should alarm on."""
        ...

    def fit(self, benign: BenignTraffic) -> Self:
        """Learn what benign traffic looks like; return the detector."""
        ...

    def observe_answer(self, client: str, x: ArrayLike, proba: ArrayLike) -> Verdict:
        """Record one query ``x`` (encoded) and the model's probabilities; judge the client."""
        ...

    def reset(self, client: str) -> None:
        """Forget everything about ``client``."""
        ...
