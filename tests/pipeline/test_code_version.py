"""A step's code version covers all mlwarden code it can reach, and nothing it cannot."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlwarden
from mlwarden.pipeline import _data_steps, _steps
from mlwarden.pipeline._code_version import _function_part, code_version, reached_modules
from tests.conftest import FAST_SPEC

PACKAGE = Path(mlwarden.__file__).resolve().parent

RUN = """
import json, sys
from pathlib import Path
import mlwarden
from mlwarden.lineage import LineageStore
from mlwarden.pipeline import LocalExecutor, load_spec

folder = Path(sys.argv[1])
assert Path(mlwarden.__file__).is_relative_to(folder / "code"), mlwarden.__file__
store = LineageStore(folder / "store")
result = LocalExecutor(store).run(load_spec(folder / "spec.yaml"))
store.close()
print(json.dumps({"status": result.status, "cached": result.cached, "executed": result.executed}))
"""


def _modules_registering_checks() -> set[str]:
    found = set()
    for file in PACKAGE.rglob("*.py"):
        if re.search(r"^@register_check\(", file.read_text(), re.MULTILINE):
            parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
            found.add(".".join(parts).removesuffix(".__init__"))
    return found


def test_the_audit_step_covers_every_check_and_the_steps_before_it_none() -> None:
    checks = _modules_registering_checks()
    assert "mlwarden.audit._evasion" in checks and len(checks) >= 8
    assert checks <= set(reached_modules(_steps.audit))
    for step in (_data_steps.ingest, _data_steps.split, _steps.evaluate):
        assert not checks & set(reached_modules(step)), step.__name__
    # adversarial training measures its held-out cost with the evasion check, and only that one
    assert checks & set(reached_modules(_steps.train)) == {"mlwarden.audit._evasion"}
    assert {"mlwarden.pipeline._adversarial_training", "mlwarden.pipeline._estimators"} <= set(
        reached_modules(_steps.train)
    )
    assert "mlwarden.models._dp" in reached_modules(_steps.train)  # named by the catalogue


def test_a_step_covers_the_helpers_of_its_own_module_it_uses_and_no_other_step() -> None:
    sources, _ = _function_part("mlwarden.pipeline._steps", "train")
    text = "".join(sources)
    assert "def train(" in text and "def _scoring(" in text  # a helper train calls
    assert "def evaluate(" not in text and "def _adapter(" not in text


def test_a_function_outside_mlwarden_is_versioned_by_its_source() -> None:
    def one(ctx: object) -> dict[str, object]:
        return {}

    def two(ctx: object) -> dict[str, object]:
        return {"x": ctx}

    assert code_version(one) != code_version(two)


def _run(folder: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(folder / "code")}
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(folder)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_editing_a_check_reruns_the_audit_and_the_steps_after_it_only(tmp_path: Path) -> None:
    shutil.copytree(
        PACKAGE, tmp_path / "code" / "mlwarden", ignore=shutil.ignore_patterns("__pycache__")
    )
    (tmp_path / "spec.yaml").write_text(FAST_SPEC)
    first = _run(tmp_path)
    assert first["status"] == "completed" and first["cached"] == []
    check = tmp_path / "code" / "mlwarden" / "audit" / "_performance.py"
    source = check.read_text()
    assert 'message=f"held-out {params.metric}' in source
    check.write_text(
        source.replace('message=f"held-out {params.metric}', 'message=f"test-set {params.metric}')
    )
    second = _run(tmp_path)
    assert second["status"] == "completed"
    assert second["cached"] == ["ingest", "validate", "split", "train", "evaluate"]
    assert second["executed"] == ["audit", "gate", "register"]
