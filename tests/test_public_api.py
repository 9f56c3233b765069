"""Every public name exists, is documented, and importing mlwarden has no side effects."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = [
    "mlwarden",
    "mlwarden.attacks",
    "mlwarden.audit",
    "mlwarden.cli",
    "mlwarden.data",
    "mlwarden.datasets",
    "mlwarden.errors",
    "mlwarden.lineage",
    "mlwarden.models",
    "mlwarden.pipeline",
    "mlwarden.report",
    "mlwarden.testing",
]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_exists_and_has_a_docstring(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__doc__
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{package}.{name} has no docstring"


def test_every_error_descends_from_the_root() -> None:
    from mlwarden import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.MlwardenError)


def test_importing_writes_nothing_and_loads_no_heavy_library(tmp_path: Path) -> None:
    code = (
        "import sys, mlwarden, mlwarden.cli, mlwarden.pipeline;"
        "heavy = [m for m in ('torch', 'sklearn', 'matplotlib', 'skops', 'ray', 'kfp',"
        " 'numpy', 'pandas') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
    assert list(tmp_path.iterdir()) == []
