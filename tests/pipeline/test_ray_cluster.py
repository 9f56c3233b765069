"""A real Ray cluster (a head and worker nodes in separate processes, built as Ray's own
test-suite builds them, and a node joining with ``ray start --address``): work lands on both
nodes, and a node killed mid-run costs a retry, not the run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlwarden._tasks import RayRunner, task_map, use_runner
from mlwarden.lineage import LineageStore, verify_store
from mlwarden.pipeline import PipelineSpec, RayExecutor

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A head with no CPU (it schedules nothing); the tests add one-CPU worker nodes."""
    built = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    ray.init(address=built.address, log_to_driver=False)
    yield built
    ray.shutdown()
    built.shutdown()


def _workers(cluster: Any, n: int) -> list[Any]:
    """Exactly ``n`` live one-CPU worker nodes (added or removed as needed)."""
    while len(cluster.worker_nodes) < n:
        cluster.add_node(num_cpus=1)
    while len(cluster.worker_nodes) > n:
        cluster.remove_node(next(iter(cluster.worker_nodes)))
    cluster.wait_for_nodes()
    return list(cluster.worker_nodes)


def _until(condition: Any, timeout: float = 120.0) -> None:
    """Wait until ``condition()`` holds (checked every 20 ms), or fail after ``timeout``."""
    waiting, deadline = threading.Event(), time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the cluster never reached the awaited state"
        waiting.wait(0.02)


@ray.remote(num_cpus=0)
class _Gate:
    """Tasks report that they run, then wait until the test opens the gate."""

    def __init__(self) -> None:
        import asyncio

        self.running, self.opened = 0, asyncio.Event()

    async def arrive(self) -> None:
        self.running += 1

    async def count(self) -> int:
        return self.running

    async def wait_open(self) -> None:
        await self.opened.wait()

    async def open(self) -> None:
        self.opened.set()


def _gate() -> Any:
    """A gate on the head node, which no test kills."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    head = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return _Gate.options(scheduling_strategy=head).remote()


def _gated_square(item: tuple[int, Any]) -> tuple[int, str]:
    x, gate = item
    ray.get(gate.arrive.remote())
    ray.get(gate.wait_open.remote())
    return x * x, ray.get_runtime_context().get_node_id()


def _open_when_running(gate: Any, tasks: int, then: Any = None) -> threading.Thread:
    """Once ``tasks`` tasks run (each node holds one), do ``then`` and open the gate."""

    def watch() -> None:
        _until(lambda: ray.get(gate.count.remote()) >= tasks)
        if then is not None:
            then()
        ray.get(gate.open.remote())

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def test_work_lands_on_both_nodes_and_survives_losing_one(cluster: Any) -> None:
    victim, _ = _workers(cluster, 2)
    with use_runner(RayRunner()) as runner:
        assert runner.workers == 2
        gate = _gate()
        opener = _open_when_running(gate, 2)
        first = task_map(_gated_square, [(x, gate) for x in range(2)])
        opener.join()
        assert [v for v, _ in first] == [0, 1]
        assert len({node for _, node in first}) == 2  # both ran at once: one on each node

        # Killed while both nodes hold a running task: the victim's task is lost mid-run.
        gate = _gate()
        kill = lambda: cluster.remove_node(victim, allow_graceful=False)  # noqa: E731
        killer = _open_when_running(gate, 2, then=kill)
        second = task_map(_gated_square, [(x, gate) for x in range(6)])
        killer.join()
    assert [v for v, _ in second] == [x * x for x in range(6)]  # the lost task was rerun
    assert victim not in cluster.worker_nodes


def _a_step_task_runs() -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::_run_step"):
                return True
        except OSError:
            continue
    return False


class _KillDuringTrain:
    """A progress display that kills the only worker node while ``train`` runs on it; a fresh
    node then joins with ``ray start --address`` (the lost task waits: the head has no CPU)."""

    def __init__(self, cluster: Any, victim: Any) -> None:
        self.cluster, self.victim = cluster, victim
        self.killer: threading.Thread | None = None
        self.joined: subprocess.Popen[bytes] | None = None
        self.said: list[tuple[str, str]] = []

    def _replace_node(self) -> None:
        # Ray titles a worker process after the task it runs: wait until one runs the step
        # (on the victim, the only node with a CPU).
        _until(_a_step_task_runs)
        self.cluster.remove_node(self.victim, allow_graceful=False)
        ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
        self.joined = subprocess.Popen(
            [ray_cli, "start", "--address", self.cluster.address, "--num-cpus", "1", "--block"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def step_started(self, step: str) -> None:
        pass

    def step_message(self, step: str, message: str) -> None:
        self.said.append((step, message))
        if step == "train" and message == "running as a Ray task":
            self.killer = threading.Thread(target=self._replace_node)
            self.killer.start()

    def step_finished(self, step: str, status: str, seconds: float) -> None:
        pass


def test_a_pipeline_run_survives_losing_the_node_that_trains_and_records_each_step_once(
    cluster: Any, store: LineageStore, fast_spec: PipelineSpec
) -> None:
    (victim,) = _workers(cluster, 1)  # every step runs on this node until it is killed
    progress = _KillDuringTrain(cluster, victim)
    try:
        result = RayExecutor(store, progress).run(fast_spec)
    finally:
        if progress.killer is not None:
            progress.killer.join()
        if progress.joined is not None:
            progress.joined.terminate()
            progress.joined.wait(60)
    assert progress.joined is not None  # the node was killed during train
    assert victim not in cluster.worker_nodes
    assert result.status == "completed", result.error
    assert result.model_version == "german@1"
    assert verify_store(store).ok
    started = [r.payload["step"] for r in store.records("execution_started")]
    assert sorted(started) == sorted(s.step for s in result.steps)  # nothing recorded twice
    # The rerun's progress still reaches this display: the queue lives on the driver's node.
    assert [m for step, m in progress.said if step == "train"][1:]
