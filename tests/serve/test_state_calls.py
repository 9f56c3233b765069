"""Detector steps and the calls they wait on: one detector run call by call, several side by
side with each round's calls on one shared state answered together (one round trip)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from mlwarden.serve._state_calls import StateCall, Steps, drive, drive_all, settle


class FakeShared:
    """Shared state that records how often it was asked, and which calls each time."""

    def __init__(self) -> None:
        self.rounds: list[list[str]] = []
        self.store: dict[str, int] = {}

    def add(self, key: str, n: int) -> StateCall[int]:
        def run() -> int:
            self.rounds.append([key])
            return self._add(key, n)

        def queue(pipe: list[tuple[str, int]]) -> int:
            pipe.append((key, n))
            return 1

        return StateCall(run, batch=self, queue=queue, parse=lambda replies: replies[0])

    def _add(self, key: str, n: int) -> int:
        self.store[key] = self.store.get(key, 0) + n
        return self.store[key]

    def answer(self, calls: Sequence[StateCall[Any]]) -> list[Any]:
        queued: list[tuple[str, int]] = []
        for call in calls:
            assert call.queue is not None and call.queue(queued) == 1
        self.rounds.append([key for key, _ in queued])
        return [self._add(key, n) for key, n in queued]  # answered in the order queued


def adder(shared: FakeShared, key: str, times: int) -> Steps[list[int]]:
    """A detector's steps: ``times`` calls, each waiting on the answer of the last."""
    seen = []
    for _ in range(times):
        seen.append((yield shared.add(key, 1)))
    return seen


def test_one_detector_is_driven_call_by_call() -> None:
    shared = FakeShared()
    assert drive(adder(shared, "a", 3)) == [1, 2, 3]
    assert shared.rounds == [["a"], ["a"], ["a"]]


def test_detectors_side_by_side_share_one_round_trip_per_round() -> None:
    shared = FakeShared()
    results = drive_all([adder(shared, "a", 1), adder(shared, "b", 2), adder(shared, "c", 0)])
    assert results == [[1], [1, 2], []]
    assert shared.rounds == [["a", "b"], ["b"]]  # one round trip per round; alone, ``run``


def test_local_calls_are_made_one_by_one_and_answers_keep_their_order() -> None:
    shared, made = FakeShared(), []

    def local(value: int) -> StateCall[int]:
        return StateCall(lambda: made.append(value) or value)

    calls = [local(1), shared.add("x", 5), local(2), shared.add("y", 7)]
    assert settle(calls) == [1, 5, 2, 7]
    assert made == [1, 2] and shared.rounds == [["x", "y"]]


def test_an_error_in_a_detector_reaches_the_caller() -> None:
    def broken() -> Steps[int]:
        raise ValueError("a row of the wrong width")
        yield  # pragma: no cover

    with pytest.raises(ValueError, match="wrong width"):
        drive_all([adder(FakeShared(), "a", 1), broken()])
