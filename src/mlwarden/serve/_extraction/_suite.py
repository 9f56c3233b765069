"""Several extraction detectors as one, and their evaluation on recorded query streams."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Self

from numpy.typing import ArrayLike

from mlwarden.errors import ParameterError
from mlwarden.serve._extraction._protocol import BenignTraffic, Detector, Pattern, Stream
from mlwarden.serve._state_calls import drive_all
from mlwarden.serve._verdict import Verdict

if TYPE_CHECKING:
    from mlwarden.serve._state import GuardState

__all__ = ["DetectorSuite", "detection_delay", "false_positive_rate"]


class DetectorSuite:
    """Several detectors as one: an alarm when any of them raises one.

    Parameters
    ----------
    detectors : sequence of Detector
        Each sees every query; their verdicts are kept in the suite verdict's ``parts``.
    name : str
        The suite's name in verdicts.
    """

    def __init__(self, detectors: Sequence[Detector], *, name: str = "suite") -> None:
        if not detectors:
            raise ParameterError("a DetectorSuite needs at least one detector")
        names = [d.name for d in detectors]
        if len(set(names)) != len(names):
            raise ParameterError(f"detector names must be distinct, got {names}")
        self.detectors = list(detectors)
        self.name = name
        self._batched = False  # shared onto a state that answers a round's calls at once

    @property
    def catches(self) -> frozenset[Pattern]:
        """What any of its detectors catches."""
        return frozenset().union(*(d.catches for d in self.detectors))

    def fit(self, benign: BenignTraffic) -> Self:
        """Fit every detector on the same benign traffic."""
        for detector in self.detectors:
            detector.fit(benign)
        return self

    def observe_answer(self, client: str, x: ArrayLike, proba: ArrayLike) -> Verdict:
        """Pass one query to every detector; alarm if any alarms.

        On shared state (Redis), detectors that work in steps (``steps``: all the built-in
        ones) run side by side, so the query costs one round trip for all of them; any other
        detector, and every detector on in-process state, is asked with ``observe_answer``.
        """
        if not self._batched:  # in-process state: nothing to gather, each answers alone
            alone = tuple(d.observe_answer(client, x, proba) for d in self.detectors)
            return Verdict.any_of(self.name, client, alone)
        parts: list[Verdict | None] = [None] * len(self.detectors)
        stepped: list[int] = []
        all_steps = []
        for i, detector in enumerate(self.detectors):
            steps = getattr(detector, "steps", None)
            if callable(steps):
                stepped.append(i)
                all_steps.append(steps(client, x, proba))
            else:
                parts[i] = detector.observe_answer(client, x, proba)
        for i, verdict in zip(stepped, drive_all(all_steps), strict=True):
            parts[i] = verdict
        return Verdict.any_of(self.name, client, tuple(v for v in parts if v is not None))

    observe = observe_answer

    def share(self, state: GuardState) -> list[str]:
        """Keep every detector's per-client state in ``state`` (shared by replicas when it is
        Redis): flag windows, and for PRADA and the coverage detector the queries, as a log
        each replica replays; returns the names of those that keep theirs in this process
        (a detector without ``share``)."""
        self._batched = callable(getattr(state, "answer", None))
        local = []
        for detector in self.detectors:
            share = getattr(detector, "share", None)
            if callable(share):
                share(state)
            else:
                local.append(detector.name)
        return local

    def reset(self, client: str) -> None:
        """Forget ``client`` in every detector."""
        for detector in self.detectors:
            detector.reset(client)


_PROBE = "__mlwarden_evaluation__"


def detection_delay(detector: Detector, stream: Stream, *, client: str = _PROBE) -> int | None:
    """Queries of ``stream`` until ``detector`` first alarms (1-based), or None.

    The client starts from a clean state and is forgotten afterwards.

    Parameters
    ----------
    detector : Detector
    stream : iterable of (encoded row, probabilities) pairs
        E.g. ``zip(space.transform(rows), proba)``.
    client : str
        The client name used (pick one no real client has).
    """
    detector.reset(client)
    try:
        for i, (x, proba) in enumerate(stream, start=1):
            if detector.observe_answer(client, x, proba).alarm:
                return i
        return None
    finally:
        detector.reset(client)


def false_positive_rate(detector: Detector, benign_streams: Sequence[Stream]) -> float:
    """Share of benign streams (one client each) on which ``detector`` ever alarms.

    Parameters
    ----------
    detector : Detector
    benign_streams : sequence of streams
        One per benign client.
    """
    if not benign_streams:
        raise ParameterError("false_positive_rate needs at least one benign stream")
    alarmed = sum(
        detection_delay(detector, stream, client=f"{_PROBE}{i}") is not None
        for i, stream in enumerate(benign_streams)
    )
    return alarmed / len(benign_streams)
