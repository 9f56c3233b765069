"""The local executor: dependency order, caching, partial reruns, failures and crash resume."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from mlwarden.errors import SpecError
from mlwarden.lineage import LineageStore, execution_info, verify_store
from mlwarden.models import ModelRegistry
from mlwarden.pipeline import LocalExecutor, PipelineSpec, build_steps, load_spec, parse_spec
from tests.conftest import FAST_SPEC, edit_spec, spec_with_a_bad_row

ALL_STEPS = ["ingest", "validate", "split", "train", "evaluate", "audit", "gate", "register"]


def test_steps_run_in_dependency_order(fast_spec: PipelineSpec) -> None:
    steps, _ = build_steps(fast_spec)
    assert [s.name for s in steps] == ALL_STEPS
    seen: set[str] = set()
    for step in steps:
        for ref in step.inputs.values():
            assert ref.split(".")[0] in seen | {"source"}
        seen.add(step.name)


def test_a_first_run_executes_everything_and_registers(
    store: LineageStore, fast_spec: PipelineSpec
) -> None:
    result = LocalExecutor(store).run(fast_spec)
    assert result.status == "completed", result.error
    assert result.executed == ALL_STEPS
    assert result.model_version == "german@1"
    assert verify_store(store).ok


def test_an_unchanged_rerun_executes_nothing(store: LineageStore, fast_spec: PipelineSpec) -> None:
    LocalExecutor(store).run(fast_spec)
    again = LocalExecutor(store).run(fast_spec)
    assert again.executed == []
    assert again.cached == ALL_STEPS
    assert again.model_version == "german@1"
    assert len(ModelRegistry(store).versions("german")) == 1


def test_changing_a_threshold_reruns_only_the_steps_downstream(store: LineageStore) -> None:
    LocalExecutor(store).run(parse_spec(FAST_SPEC))
    changed = edit_spec(FAST_SPEC, "min: 0.7", "min: 0.65")
    result = LocalExecutor(store).run(changed)
    assert result.cached == ["ingest", "validate", "split", "train", "evaluate"]
    assert result.executed == ["audit", "gate", "register"]
    assert result.model_version == "german@2"


def test_changing_the_split_seed_reruns_from_split(store: LineageStore) -> None:
    LocalExecutor(store).run(parse_spec(FAST_SPEC))
    result = LocalExecutor(store).run(edit_spec(FAST_SPEC, "seed: 3", "seed: 4"))
    assert result.cached == ["ingest", "validate"]
    assert result.executed == ALL_STEPS[2:]


def test_a_damaged_cached_output_is_recomputed_not_reused(
    store: LineageStore, fast_spec: PipelineSpec
) -> None:
    first = LocalExecutor(store).run(fast_spec)
    model = store.artifacts.path(first.artifacts["train.model"])
    model.chmod(0o644)
    model.write_bytes(b"tampered")
    again = LocalExecutor(store).run(fast_spec)
    assert again.executed == ["train"]  # same bytes again, so everything after is a cache hit
    assert again.artifacts["train.model"] == first.artifacts["train.model"]
    assert verify_store(store).ok  # the damaged blob was rewritten from the retrained model


def test_the_gate_refuses_a_model_below_the_floor(store: LineageStore) -> None:
    spec = edit_spec(FAST_SPEC, "min: 0.7", "min: 0.99")
    result = LocalExecutor(store).run(spec)
    assert result.status == "rejected"
    assert result.exit_code == 1
    assert "performance_floor" in (result.error or "")
    assert result.model_version is None
    assert ModelRegistry(store).versions() == []
    assert verify_store(store).ok


def test_warn_mode_registers_a_failing_model_flagged(store: LineageStore) -> None:
    spec = edit_spec(FAST_SPEC.replace("mode: fail-closed", "mode: warn"), "min: 0.7", "min: 0.99")
    result = LocalExecutor(store).run(spec)
    assert result.status == "completed"
    version = ModelRegistry(store).get("german@latest")
    assert version.manifest.gate["passed"] is False
    assert version.manifest.gate["mode"] == "warn"


def test_a_failing_step_keeps_rejected_rows_and_the_store_consistent(
    tmp_path: Path, store: LineageStore
) -> None:
    result = LocalExecutor(store).run(spec_with_a_bad_row(tmp_path))
    assert result.status == "failed"
    assert result.exit_code == 3
    assert "validation quarantined 1 of 20 rows" in (result.error or "")
    validate = next(s for s in result.steps if s.step == "validate")
    rejected = store.read_artifact(validate.outputs["rejected"]).decode()
    assert "x: not a number" in rejected
    assert [s.status for s in result.steps[2:]] == ["skipped"] * 6
    assert verify_store(store).ok
    assert execution_info(store, validate.execution_id or "").status == "failed"


def test_a_missing_label_column_is_a_clear_data_error(tmp_path: Path, store: LineageStore) -> None:
    table = tmp_path / "t.csv"
    pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}).to_csv(table, index=False)
    text = FAST_SPEC.replace(
        "  dataset: german\n  label: credit\n  positive: bad\n", f"  path: {table}\n  label: z\n"
    )
    result = LocalExecutor(store).run(parse_spec(text))
    assert result.status == "failed"
    assert result.error == (
        "ingest: label column 'z' is not in the table; its columns are ['x', 'y']"
    )


_CRASH = """
import os, signal, sys
from mlwarden.lineage import LineageStore
from mlwarden.pipeline import LocalExecutor, parse_spec
{patch}
store = LineageStore(sys.argv[1])
LocalExecutor(store).run(parse_spec(open(sys.argv[2]).read()))
"""

_KILL_IN_FIT = """
import mlwarden.pipeline._search as search
def grid_search(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
search.grid_search = grid_search
"""

_KILL_IN_COMMIT = """
from mlwarden.lineage import Appender
original = Appender.append
def append(self, kind, subject, payload, *, key=None):
    record = original(self, kind, subject, payload, key=key)
    if kind == "execution_ended" and payload["status"] == "completed" and self.count(
        "execution_ended", subject) and len(self.appended) > 3:
        os.kill(os.getpid(), signal.SIGKILL)  # outputs inserted, commit not reached
    return record
Appender.append = append
"""


@pytest.mark.parametrize(
    ("patch", "first_redone"),
    [(_KILL_IN_FIT, "train"), (_KILL_IN_COMMIT, "ingest")],
    ids=["kill -9 inside a step", "kill -9 inside the completing transaction"],
)
def test_a_killed_run_leaves_the_store_consistent_and_the_next_run_resumes(
    tmp_path: Path, fast_spec: PipelineSpec, patch: str, first_redone: str
) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(FAST_SPEC)
    root = tmp_path / "store"
    script = textwrap.dedent(_CRASH.format(patch=textwrap.dedent(patch)))
    crashed = subprocess.run(
        [sys.executable, "-c", script, str(root), str(spec_file)], capture_output=True, text=True
    )
    assert crashed.returncode == -9, crashed.stderr
    store = LineageStore(root)
    assert verify_store(store).ok
    assert not ModelRegistry(store).versions()
    result = LocalExecutor(store).run(fast_spec)
    assert result.status == "completed"
    assert result.executed[0] == first_redone
    assert result.cached == ALL_STEPS[: ALL_STEPS.index(first_redone)]
    interrupted = [
        r.subject
        for r in store.records("execution_started")
        if not store.records("execution_ended", subject=r.subject)
    ]
    assert len(interrupted) == 1
    assert execution_info(store, interrupted[0]).status == "interrupted"
    assert verify_store(store).ok


GERMAN_THREAT = """\
target: good
features:
  duration_months: {min: 6, max: 48, step: 6, cost: 0.1}
  housing: {values: [own, rent, for free], cost: 1.0}
"""

EVASION_CHECK = (
    "  - {check: evasion, threat_model: threats/german.yaml, cost_budget: 2, max_success: 1.0,"
    " rows: 20}\ngate:\n"
)


def test_editing_a_threat_model_file_reruns_the_audit_and_after_only(
    tmp_path: Path, store: LineageStore
) -> None:
    threat = tmp_path / "threats" / "german.yaml"
    threat.parent.mkdir()
    threat.write_text(GERMAN_THREAT)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(FAST_SPEC.replace("gate:\n", EVASION_CHECK))
    first = LocalExecutor(store).run(load_spec(spec_file))
    assert first.status == "completed", first.error
    source = first.artifacts["source.checks.1.threat_model"]
    assert store.read_artifact(source) == threat.read_bytes()  # recorded in lineage as a source
    audit = next(s for s in first.steps if s.step == "audit")
    assert audit.inputs["checks.1.threat_model"] == source
    threat.write_text(GERMAN_THREAT.replace("cost: 0.1", "cost: 0.5"))
    again = LocalExecutor(store).run(load_spec(spec_file))
    assert again.cached == ["ingest", "validate", "split", "train", "evaluate"]
    assert again.executed == ["audit", "gate", "register"]
    assert again.artifacts["source.checks.1.threat_model"] != source


def test_the_hardening_threat_model_file_is_an_input_of_train(tmp_path: Path) -> None:
    threat = tmp_path / "german.yml"
    threat.write_text(GERMAN_THREAT)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        FAST_SPEC.replace(
            "  n_jobs: 1\n", "  n_jobs: 1\n  harden: {threat_model: german.yml, cost_budget: 2}\n"
        )
    )
    spec = load_spec(spec_file)
    steps, sources = build_steps(spec)
    train = next(s for s in steps if s.name == "train")
    assert train.inputs["threat_model"] == "source.train.harden.threat_model"
    assert sources["train.harden.threat_model"].data == threat.read_bytes()
    assert all("threat_model" not in s.inputs for s in steps if s.name != "train")
    threat.unlink()  # gone between loading the spec and running it
    with pytest.raises(SpecError, match=r"train\.harden\.threat_model: cannot read threat model"):
        build_steps(spec)
