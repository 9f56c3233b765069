"""The Ray executor: the same runs as :class:`LocalExecutor`, with step code on a Ray cluster.

The driver stays the lineage store's single writer: it computes cache keys, records every
start, output and end, and runs the steps that sign or register (they need the signing key,
which never leaves this machine). Every other step runs as a Ray task: its input artifacts
travel by content hash through Ray's object store (each put once per run), its outputs come
back as bytes and are stored by the driver exactly as a local run stores them, so a Ray run
and a local rerun share cache keys and artifact hashes. Independent work inside a step
(reference models, surrogate fits) becomes further Ray tasks. A task lost with its node is
run again by Ray (``max_retries``); its first attempt recorded nothing, so nothing is
recorded twice. A step's progress messages travel back on a Ray queue that the driver reads
while the task runs, so a Ray run shows the same messages as a local one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlwarden._tasks import RayRunner, use_runner
from mlwarden.lineage import LineageStore, Signer
from mlwarden.pipeline._context import Output, RecordBuilder, StepContext
from mlwarden.pipeline._dag import StepDef
from mlwarden.pipeline._executor import LocalExecutor, Progress, RunResult
from mlwarden.pipeline._spec import AnySpec

#: How often the driver looks for a running step's progress messages, in seconds.
_POLL_S = 0.2

_StepResult = tuple[
    dict[str, Output] | None, dict[str, Output], list[RecordBuilder], BaseException | None
]


def _run_step(
    fn: Callable[[StepContext], dict[str, Output]],
    step: str,
    params: dict[str, Any],
    run: dict[str, Any],
    inputs: dict[str, Any],
    messages: Any,
) -> _StepResult:
    """A step on a Ray worker: what it produced, kept and recorded, or the error it raised.

    Its progress messages go on ``messages`` (a Ray queue), which the driver reads while it
    waits for the task."""
    import ray

    data = dict(zip(inputs, ray.get(list(inputs.values())), strict=True))
    ctx = StepContext(
        step=step, params=params, run=run, _read=data.__getitem__, _progress=messages.put
    )
    with use_runner(RayRunner()):
        try:
            produced: dict[str, Output] | None = fn(ctx)
            error = None
        except Exception as exc:  # returned, so that the rows it kept are not lost with it
            produced, error = None, exc
    try:  # the driver may be on another machine: files written here travel as bytes
        return (
            None if produced is None else {k: v.in_memory() for k, v in produced.items()},
            {k: v.in_memory() for k, v in ctx.kept.items()},
            ctx.records,
            error,
        )
    finally:
        ctx.close()


class RayExecutor(LocalExecutor):
    """Runs a pipeline's steps as Ray tasks (``address``: a cluster; None: a local one).

    Parameters
    ----------
    store : LineageStore
        The lineage store, written by this process only.
    address : str, optional
        ``ray.init``'s address (``auto``, ``ray://host:10001``...); None starts or joins a
        local Ray instance.
    max_retries : int
        How often Ray reruns a step whose worker or node died.
    """

    name = "ray"

    def __init__(
        self,
        store: LineageStore,
        progress: Progress | None = None,
        *,
        address: str | None = None,
        max_retries: int = 3,
    ) -> None:
        runner = RayRunner(address=address, max_retries=max_retries)
        super().__init__(store, progress, runner)
        self.max_retries = max_retries
        self._objects: dict[str, Any] = {}  # artifact hash -> Ray object, put once per run
        self._messages: Any = None  # the Ray queue steps report progress on, made once

    def _queue(self) -> Any:
        """The progress queue, on this process's node: a worker node lost mid-step takes
        the step's task with it (Ray reruns it), never the queue."""
        import ray
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if self._messages is None:
            here = ray.get_runtime_context().get_node_id()
            strategy = NodeAffinitySchedulingStrategy(here, soft=False)
            self._messages = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": strategy})
        return self._messages

    def run(
        self, spec: AnySpec, signer: Signer | None = None, *, only: str | None = None
    ) -> RunResult:
        """:meth:`LocalExecutor.run`, then the progress queue's actor is let go."""
        try:
            return super().run(spec, signer, only=only)
        finally:
            if self._messages is not None:
                self._messages.shutdown(force=True)  # every message was read
                self._messages = None

    def _object(self, sha: str) -> Any:
        import ray

        if sha not in self._objects:
            self._objects[sha] = ray.put(self.store.read_artifact(sha))
        return self._objects[sha]

    def call_step(self, step: StepDef, ctx: StepContext) -> dict[str, Output]:
        """Run the step as a Ray task, unless it registers (then here, beside the key)."""
        if step.registers:
            return super().call_step(step, ctx)
        import ray

        assert isinstance(self.runner, RayRunner)
        self.runner.connect()
        input_sha: dict[str, str] = ctx.run["input_sha"]
        run = {k: v for k, v in ctx.run.items() if k != "signer"}
        inputs = {role: self._object(sha) for role, sha in input_sha.items()}
        task = ray.remote(max_retries=self.max_retries)(_run_step)
        ctx.progress("running as a Ray task")
        messages = self._queue()
        running = task.remote(step.fn, step.name, ctx.params, run, inputs, messages)
        done: list[Any] = []
        while not done:  # show the step's messages as they come, as a local run does
            done, _ = ray.wait([running], timeout=_POLL_S)
            while not messages.empty():
                ctx.progress(messages.get_nowait())
        produced, kept, records, error = ray.get(running)
        ctx.kept.update(kept)
        ctx.records.extend(records)
        if error is not None:
            raise error
        assert produced is not None
        return produced
