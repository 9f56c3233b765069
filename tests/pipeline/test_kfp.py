"""A spec compiled to Kubeflow Pipelines and run end to end offline with kfp.local."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlwarden.lineage import LineageStore, verify_store
from mlwarden.models import ModelRegistry
from mlwarden.pipeline import LocalExecutor, parse_spec
from mlwarden.pipeline._kfp import compile_kfp
from tests.conftest import FAST_SPEC

kfp = pytest.importorskip("kfp")
STEPS = ["ingest", "validate", "split", "train", "evaluate", "audit", "gate", "register"]


# kfp.local says a task's display name (the step's name in the KFP UI) does nothing locally,
# and that the component's image is not used (this environment holds mlwarden already)
@pytest.mark.filterwarnings("ignore:Task .*have no effect in the current local runner")
@pytest.mark.filterwarnings("ignore:You may be attemping to run a task that uses custom")
def test_a_compiled_pipeline_runs_under_kfp_local_like_a_local_run(tmp_path: Path) -> None:
    from kfp import local
    from kfp.components import load_component_from_file

    spec = tmp_path / "german.yaml"
    spec.write_text(FAST_SPEC)
    store = tmp_path / "shared-store"
    compiled = tmp_path / "pipeline.yaml"
    assert compile_kfp(spec, compiled, store=str(store), image="mlwarden:test") == STEPS
    document = yaml.safe_load(compiled.read_text())
    tasks = document["root"]["dag"]["tasks"]
    assert sorted(t["taskInfo"]["name"] for t in tasks.values()) == sorted(STEPS)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"))
    load_component_from_file(str(compiled))()

    shared = LineageStore(store)
    assert verify_store(shared).ok
    started = [r.payload["step"] for r in shared.records("execution_started")]
    assert started == STEPS  # one component per step, in order, each recorded once
    kfp_model = ModelRegistry(shared).get("german@1").manifest.model_sha256
    again = LocalExecutor(shared).run(parse_spec(FAST_SPEC))
    assert again.cached == STEPS  # a local rerun finds every step done
    shared.close()

    alone = LineageStore(tmp_path / "local-store")
    LocalExecutor(alone).run(parse_spec(FAST_SPEC))
    assert ModelRegistry(alone).get("german@1").manifest.model_sha256 == kfp_model
    alone.close()


def test_a_step_whose_predecessors_have_not_run_is_refused(tmp_path: Path) -> None:
    store = LineageStore(tmp_path / "store")
    result = LocalExecutor(store).run(parse_spec(FAST_SPEC), only="train")
    assert result.status == "failed" and result.exit_code == 4
    assert "step ingest has not run on these inputs, so step train cannot" in (result.error or "")
    assert store.records("execution_started") == []
    assert verify_store(store).ok
    store.close()


def test_the_cli_compiles_a_spec_and_refuses_a_step_out_of_order(tmp_path: Path) -> None:
    from tests.cli.test_cli import mlwarden

    spec = tmp_path / "german.yaml"
    spec.write_text(FAST_SPEC)
    made = mlwarden(
        "compile",
        str(spec),
        "-o",
        "p.yaml",
        "--image",
        "reg/mlwarden:1",
        "--store",
        "/mnt/shared",
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    assert "8 components (ingest, validate" in made.stdout
    assert {"/mnt/shared", "reg/mlwarden:1"} <= set((tmp_path / "p.yaml").read_text().split())
    early = mlwarden("step", "run", str(spec), "audit", cwd=tmp_path)
    assert early.returncode == 4
    assert "step ingest has not run on these inputs, so step audit cannot" in early.stderr
