"""What the server and the evaluation helpers need from an extraction detector."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from numpy.typing import ArrayLike

from mlwarden.serve._verdict import Verdict

__all__ = ["Detector", "Stream"]

Stream = Iterable[tuple[ArrayLike, ArrayLike]]
"""A client's queries as (encoded row, answered probabilities) pairs, in arrival order."""


@runtime_checkable
class Detector(Protocol):
    """What the server and the evaluation helpers need from a detector."""

    name: str

    def observe_answer(self, client: str, x: ArrayLike, proba: ArrayLike) -> Verdict:
        """Record one query ``x`` (encoded) and the model's probabilities; judge the client."""
        ...

    def reset(self, client: str) -> None:
        """Forget everything about ``client``."""
        ...
