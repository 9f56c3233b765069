"""The early-exit pipeline: an SDN trained, its threshold fixed, red-teamed for slowdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")

from mlwarden.errors import ModelError, SpecError
from mlwarden.lineage import LineageStore, verify_store
from mlwarden.models import ModelRegistry
from mlwarden.models._registry import EARLY_EXIT_MEDIA_TYPE
from mlwarden.pipeline import LocalExecutor, parse_spec
from tests.cli.test_cli import mlwarden

SPEC = """\
task: early_exit
name: tiny-sdn
train: {width: 8, epochs: 8, seed: 1}
exit: {threshold: 0.9}
checks:
  - {check: slowdown, max_efficacy_reduction: 30, eps: 0.2, steps: 10, rows: 60}
gate: {mode: warn}
register: {name: tiny-sdn}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sdn") / "store"
    store = LineageStore(root)
    result = LocalExecutor(store).run(parse_spec(SPEC))
    assert result.status == "completed", result.error
    assert result.model_version == "tiny-sdn@1"
    store.close()
    return root


def test_the_attack_fails_the_gate_and_the_flagged_model_is_registered(trained: Path) -> None:
    store = LineageStore(trained)
    registry = ModelRegistry(store)
    version, model, info = registry.load_early_exit("tiny-sdn@latest")
    assert version.manifest.model_media_type == EARLY_EXIT_MEDIA_TYPE
    (finding,) = json.loads(store.read_artifact(version.manifest.artifacts["findings"]))
    assert not version.manifest.gate["passed"]
    assert finding["check"] == "slowdown" and not finding["passed"]
    assert finding["value"] > finding["details"]["noise_reduction"]  # beats random noise
    assert info["threshold"] == 0.9 and 0 < info["efficacy"] < 1
    assert model.n_exits == 4
    with pytest.raises(ModelError, match="--checks slowdown"):
        registry.load("tiny-sdn@1")
    assert verify_store(store).ok
    store.close()


def test_a_rerun_is_all_cache_hits(trained: Path) -> None:
    store = LineageStore(trained)
    result = LocalExecutor(store).run(parse_spec(SPEC))
    assert [s.status for s in result.steps] == ["cached"] * 4
    store.close()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("exit: {threshold: 0.9}", "exit: {threshold: 0.9, calibrate_max_drop: 0.05}"),
            "exactly one",
        ),
        (("max_efficacy_reduction: 30", "max_efficacy_reduction: 300"), "max_efficacy_reduction"),
        (("width: 8", "width: 8, depth: 3"), "depth"),
    ],
)
def test_spec_errors_name_the_field(edit: tuple[str, str], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(SPEC.replace(*edit))


def test_audit_command_runs_deepsloth_on_a_registered_network(
    trained: Path, tmp_path: Path
) -> None:
    args = ["audit", "--model", "tiny-sdn@1", "--checks", "slowdown", "--store", str(trained)]
    strict = mlwarden(
        *args, "--max-efficacy-reduction", "20", "--out", str(tmp_path / "a"), cwd=tmp_path
    )
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "FAIL slowdown" in strict.stdout and "noise of the same size" in strict.stdout
    mixed = mlwarden(*args[:4], "slowdown,ood", "--store", str(trained), cwd=tmp_path)
    assert mixed.returncode == 2 and "on its own" in mixed.stderr
