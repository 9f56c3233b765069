"""The Ray executor: same cache keys, artifacts and model bytes as a local run; failures alike."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlwarden.lineage import LineageStore, verify_store
from mlwarden.pipeline import LocalExecutor, PipelineSpec, RayExecutor, RunResult, parse_spec
from tests.conftest import FAST_SPEC, spec_with_a_bad_row

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


class _Messages:
    """A progress display that records every step message, in order."""

    def __init__(self) -> None:
        self.said: list[tuple[str, str]] = []

    def step_started(self, step: str) -> None:
        pass

    def step_message(self, step: str, message: str) -> None:
        self.said.append((step, message))

    def step_finished(self, step: str, status: str, seconds: float) -> None:
        pass


_LocalRun = tuple[RunResult, list[dict[str, Any]], list[tuple[str, str]]]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> _LocalRun:
    store = LineageStore(tmp_path_factory.mktemp("local") / "store")
    progress = _Messages()
    result = LocalExecutor(store, progress).run(parse_spec(FAST_SPEC))
    findings = _untimed(store, result)
    store.close()
    return result, findings, progress.said


def _untimed(store: LineageStore, result: RunResult) -> list[dict[str, Any]]:
    """The audit's findings without their wall times (the one field two runs never share)."""
    findings = json.loads(store.read_artifact(result.artifacts["audit.findings"]))
    return [{k: v for k, v in f.items() if k != "wall_time_s"} for f in findings]


def test_a_ray_run_matches_a_local_run_and_a_local_rerun_is_all_cache_hits(
    ray_instance: None,
    local_run: _LocalRun,
    store: LineageStore,
    fast_spec: PipelineSpec,
) -> None:
    local, local_findings, local_said = local_run
    progress = _Messages()
    on_ray = RayExecutor(store, progress).run(fast_spec)
    assert on_ray.status == "completed", on_ray.error
    on_tasks = [step for step, message in progress.said if message == "running as a Ray task"]
    assert on_tasks == [s.step for s in on_ray.steps if s.step != "register"]
    # What the steps said on their Ray workers reached this process's display, as in a local run
    # (register runs here, and names the signing key each store made).
    said = [m for m in progress.said if m[1] != "running as a Ray task" and m[0] != "register"]
    assert said == [m for m in local_said if m[0] != "register"]
    assert any(step == "train" for step, _ in said)
    assert on_ray.model_version == "german@1"
    assert on_ray.artifacts["train.model"] == local.artifacts["train.model"]
    timed = {"audit.findings"}  # and everything downstream keys on it
    assert {k: v for k, v in on_ray.artifacts.items() if k not in timed} == {
        k: v for k, v in local.artifacts.items() if k not in timed
    }
    assert _untimed(store, on_ray) == local_findings
    up_to_audit = [s.cache_key for s in on_ray.steps if s.step not in ("gate", "register")]
    assert up_to_audit == [s.cache_key for s in local.steps if s.step not in ("gate", "register")]
    started = store.records("run_started", subject=on_ray.run_id)[0]
    assert started.payload["executor"] == "ray"

    again = LocalExecutor(store).run(fast_spec)
    assert again.executed == [] and again.cached == [s.step for s in on_ray.steps]
    assert verify_store(store).ok


def test_a_step_failing_on_ray_keeps_its_rejected_rows_like_a_local_run(
    ray_instance: None, tmp_path: Path, store: LineageStore
) -> None:
    result = RayExecutor(store).run(spec_with_a_bad_row(tmp_path))
    assert result.status == "failed" and result.exit_code == 3
    assert "validation quarantined 1 of 20 rows" in (result.error or "")
    validate = next(s for s in result.steps if s.step == "validate")
    assert "x: not a number" in store.read_artifact(validate.outputs["rejected"]).decode()
    assert verify_store(store).ok
