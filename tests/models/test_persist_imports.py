"""Saving and loading a scikit-learn model does not import torch (seconds, and never used)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

SCRIPT = """
import sys
from sklearn.linear_model import LogisticRegression
from mlwarden.models import dumps_model, loads_model
model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
again = loads_model(dumps_model(model))
assert (again.predict([[0.5], [2.5]]) == [0, 1]).all()
print("torch" in sys.modules, "sklearn.externals.array_api_compat.torch" in sys.modules)
"""


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_a_scikit_learn_model_round_trips_without_importing_torch() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=False, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False"]
