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


def _slow_square(x: int) -> tuple[int, str]:
    time.sleep(1.0)
    return x * x, ray.get_runtime_context().get_node_id()


def test_work_lands_on_both_nodes_and_survives_losing_one(cluster: Any) -> None:
    victim, _ = _workers(cluster, 2)
    with use_runner(RayRunner()) as runner:
        assert runner.workers == 2
        first = task_map(_slow_square, range(4))
        assert [v for v, _ in first] == [0, 1, 4, 9]
        assert len({node for _, node in first}) == 2  # both worker nodes did some

        # Both nodes are busy for three seconds: the kill lands on a running task.
        killer = threading.Timer(1.5, cluster.remove_node, (victim,), {"allow_graceful": False})
        killer.start()
        second = task_map(_slow_square, range(6))
        killer.join()
    assert [v for v, _ in second] == [x * x for x in range(6)]  # the lost task was rerun
    assert victim not in cluster.worker_nodes


class _KillDuringTrain:
    """A progress display that kills the only worker node while ``train`` runs on it; a fresh
    node then joins with ``ray start --address`` (the lost task waits: the head has no CPU)."""

    def __init__(self, cluster: Any, victim: Any) -> None:
        self.cluster, self.victim = cluster, victim
        self.killer: threading.Thread | None = None
        self.joined: subprocess.Popen[bytes] | None = None

    def _replace_node(self) -> None:
        time.sleep(0.3)
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
