"""Calls on guard state that a detector's steps wait for, and how they are answered.

A detector's per-query work is written as *steps* (a generator): it computes what it can
alone, then yields the one :class:`StateCall` it must wait for (a flag pushed, a log
exchanged) and resumes with the answer. :func:`drive` runs one detector's steps call by call;
:func:`drive_all` runs several side by side and answers each round's calls with
:func:`settle`: those on one shared state together, so that on Redis a query costs one round
trip for the whole suite instead of one per detector.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Batch", "StateCall", "Steps", "drive", "drive_all", "settle"]

T = TypeVar("T")
R = TypeVar("R")


class Batch(Protocol):
    """Shared state that answers several :class:`StateCall` s in one round trip."""

    def answer(self, calls: Sequence[StateCall[Any]]) -> list[Any]:
        """Each call's answer, in order (their fallbacks if the shared state fails open)."""
        ...


class StateCall(Generic[T]):
    """One call on guard state that a detector's steps wait for.

    ``run`` makes it alone. A call on shared state also names its ``batch`` and says how to
    join one: ``queue`` puts its commands on a Redis pipeline and returns how many replies
    they take, ``parse`` reads its answer from those replies, and ``fallback`` answers when
    the shared state fails open (this process's own state, as ``run`` would then).
    """

    __slots__ = ("batch", "fallback", "parse", "queue", "run")

    def __init__(
        self,
        run: Callable[[], T],
        *,
        batch: Batch | None = None,
        queue: Callable[[Any], int] | None = None,
        parse: Callable[[list[Any]], T] | None = None,
        fallback: Callable[[], T] | None = None,
    ) -> None:
        self.run, self.batch, self.queue, self.parse, self.fallback = (
            run, batch, queue, parse, fallback
        )  # fmt: skip


Steps = Generator[StateCall[Any], Any, R]
"""A detector's work on one query: yields the state calls it waits for, returns its verdict."""


def settle(calls: Sequence[StateCall[Any]]) -> list[Any]:
    """Answer ``calls`` (independent of each other): local ones one by one, those on one
    shared state together, in one round trip."""
    answers: list[Any] = [None] * len(calls)
    batches: dict[int, list[int]] = {}
    for i, call in enumerate(calls):
        if call.batch is None:
            answers[i] = call.run()
        else:
            batches.setdefault(id(call.batch), []).append(i)
    for members in batches.values():
        batch = calls[members[0]].batch
        assert batch is not None
        for i, answer in zip(members, batch.answer([calls[i] for i in members]), strict=True):
            answers[i] = answer
    return answers


def drive(steps: Steps[R]) -> R:
    """Run one detector's steps to their result, answering each call as it comes."""
    try:
        call = next(steps)
        while True:
            call = steps.send(call.run())
    except StopIteration as done:
        result: R = done.value
        return result


def drive_all(all_steps: Sequence[Steps[R]]) -> list[R]:
    """Run several detectors' steps side by side: each round answers every call waiting
    (:func:`settle`), so shared state is asked once per round, not once per detector."""
    results: list[Any] = [None] * len(all_steps)
    waiting: list[tuple[int, StateCall[Any]]] = []

    def advance(i: int, answer: Any, first: bool) -> None:
        steps = all_steps[i]
        try:
            waiting.append((i, next(steps) if first else steps.send(answer)))
        except StopIteration as done:
            results[i] = done.value

    for i in range(len(all_steps)):
        advance(i, None, True)
    while waiting:
        rounds, waiting[:] = list(waiting), []
        for (i, _), answer in zip(rounds, settle([c for _, c in rounds]), strict=True):
            advance(i, answer, False)
    return results
