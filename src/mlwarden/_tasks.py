"""Independent work items mapped over workers: in this process, local processes, or Ray.

Steps and attacks hand their embarrassingly parallel parts (reference models, surrogate fits,
cross-validation folds) to :func:`task_map`; which engine runs them is chosen once, by whoever
runs the pipeline (``use_runner``), not by each caller. Every engine returns the results in
item order and each item carries its own inputs (seeds included: :func:`item_seeds`), so the
results do not depend on the engine or on how many workers it has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mlwarden.errors import ParameterError

__all__ = [
    "JoblibRunner",
    "RayRunner",
    "Runner",
    "at_least",
    "current_runner",
    "item_seeds",
    "task_map",
    "use_runner",
]

#: Chunks per local worker: fewer copies of the work's data, against more idle time at the end.
_CHUNKS_PER_WORKER = 2

T = TypeVar("T")
R = TypeVar("R")


class Runner(Protocol):
    """Maps a function over independent items and returns the results in item order."""

    @property
    def name(self) -> str:
        """The engine's name, as recorded in lineage (``local`` or ``ray``)."""
        ...

    @property
    def workers(self) -> int:
        """How many items may run at once."""
        ...

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(item) for item in items]``, possibly in parallel."""
        ...


@dataclass(frozen=True)
class JoblibRunner:
    """Local worker processes through joblib (``n_jobs=1``: in this process, no pickling)."""

    n_jobs: int = 1

    def __post_init__(self) -> None:
        if self.n_jobs < 1:
            raise ParameterError(f"n_jobs must be >= 1, got {self.n_jobs}")

    @property
    def name(self) -> str:
        return "local"

    @property
    def workers(self) -> int:
        return self.n_jobs

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if self.n_jobs == 1 or len(items) < 2:
            return [fn(item) for item in items]
        from joblib import Parallel, delayed

        jobs = min(self.n_jobs, len(items))
        # The function (and the data it closes over) is pickled once per chunk, not per item:
        # a few interleaved chunks per worker keep both the copies and the idle tails small.
        n_chunks = min(len(items), jobs * _CHUNKS_PER_WORKER)
        chunks = [list(items[start::n_chunks]) for start in range(n_chunks)]
        done = Parallel(n_jobs=jobs)(delayed(_call_chunk)(fn, chunk) for chunk in chunks)
        results: list[R] = [None] * len(items)  # type: ignore[list-item]
        for start, part in enumerate(done):
            results[start::n_chunks] = part
        return results


@dataclass(frozen=True)
class RayRunner:
    """Ray tasks on the cluster this process is connected to (``ray.init`` first, or
    ``address``). A task lost with its node is run again, up to ``max_retries`` times; the items
    are pure functions of their inputs, so a rerun gives the same result."""

    address: str | None = None
    max_retries: int = 3
    num_cpus: float = 1.0

    @property
    def name(self) -> str:
        return "ray"

    @property
    def workers(self) -> int:
        import ray

        self.connect()
        cpus = ray.cluster_resources().get("CPU", 1)  # type: ignore[no-untyped-call]
        return max(1, int(cpus // self.num_cpus))

    def connect(self) -> None:
        """Join the cluster at ``address`` (None: start or join a local one), once."""
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, include_dashboard=False)

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        import ray

        self.connect()
        remote: Any = ray.remote(max_retries=self.max_retries, num_cpus=self.num_cpus)(_call)
        shared = ray.put(fn)  # the function (and what it closes over) travels once
        return list(ray.get([remote.remote(shared, item) for item in items]))


def _call_chunk(fn: Callable[[T], R], chunk: list[T]) -> list[R]:
    return [fn(item) for item in chunk]


def _call(fn: Callable[[T], R], item: T) -> R:
    return fn(item)


_SERIAL = JoblibRunner()
_RUNNER: ContextVar[Runner | None] = ContextVar("mlwarden_runner", default=None)


def current_runner() -> Runner:
    """The runner :func:`task_map` uses here (in-process unless :func:`use_runner` set one)."""
    return _RUNNER.get() or _SERIAL


def at_least(n_jobs: int | None) -> Runner:
    """The current runner, with at least ``n_jobs`` processes when it runs locally: a step's
    own floor (a spec's ``n_jobs``) holds even when the run asked for fewer workers."""
    runner = current_runner()
    if n_jobs is not None and runner.name == "local" and runner.workers < n_jobs:
        return JoblibRunner(n_jobs)
    return runner


@contextmanager
def use_runner(runner: Runner) -> Iterator[Runner]:
    """Run the :func:`task_map` calls made inside this block on ``runner``."""
    token = _RUNNER.set(runner)
    try:
        yield runner
    finally:
        _RUNNER.reset(token)


def task_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(item) for item in items]`` on the current runner, results in item order.

    ``fn`` must be a pure function of its item (and what it closes over): it may run in another
    process or on another machine, more than once if a node is lost.
    """
    return current_runner().map(fn, list(items))


def item_seeds(seed: int, n: int) -> list[int]:
    """``n`` independent seeds derived from ``seed`` (NumPy's SeedSequence spawning): item
    ``i`` gets the same seed whatever the engine, the worker count or the other items."""
    import numpy as np

    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]
