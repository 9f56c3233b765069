"""The shipped alert rules: valid for promtool, unit-tested, and naming only real metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from mlwarden.serve._metrics import ServerMetrics

RULES = Path(str(resources.files("mlwarden.serve").joinpath("prometheus", "mlwarden-rules.yaml")))


def _family(name: str) -> str:
    return re.sub(r"_(total|bucket|count|sum|created)$", "", name)


def test_every_metric_the_rules_name_is_one_the_server_exposes() -> None:
    exposition = generate_latest(ServerMetrics().registry).decode()
    exposed = {_family(n) for n in re.findall(r"^# TYPE (\S+)", exposition, flags=re.MULTILINE)}
    named = {_family(n) for n in re.findall(r"\bmlwarden_[a-z_]+", RULES.read_text())}
    assert named <= exposed, named - exposed
    assert len(named) >= 8


promtool = shutil.which("promtool")


@pytest.mark.skipif(promtool is None, reason="promtool is not installed (CI installs it)")
@pytest.mark.parametrize(
    "command",
    [["check", "rules", "mlwarden-rules.yaml"], ["test", "rules", "mlwarden-rules.test.yaml"]],
)
def test_promtool_accepts_and_unit_tests_the_rules(command: list[str]) -> None:
    result = subprocess.run(
        [str(promtool), *command], cwd=RULES.parent, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
