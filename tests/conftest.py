"""Shared fixtures: a fresh store per test and a small, fast pipeline spec on real data."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlwarden.lineage import LineageStore
from mlwarden.pipeline import PipelineSpec, parse_spec

# German Credit (1,000 rows) with logistic regression: the whole pipeline runs in a few seconds.
FAST_SPEC = """\
name: german
data:
  dataset: german
  label: credit
  positive: bad
split:
  test_size: 0.3
  seed: 3
train:
  estimator: logistic_regression
  params:
    max_iter: 500
  grid:
    C: [0.1, 1.0]
  cv: 3
  scoring: roc_auc
  n_jobs: 1
checks:
  - check: performance_floor
    metric: roc_auc
    min: 0.7
gate:
  mode: fail-closed
register:
  name: german
"""


_KEY_ENV = (
    "MLWARDEN_KEY_DIR",
    "MLWARDEN_TRUST",
    "MLWARDEN_SIGNING_KEY",
    "MLWARDEN_SIGNING_KEY_FILE",
    "MLWARDEN_MODEL_SIGNING_KEY_FILE",
    "MLWARDEN_REQUIRE_PROVENANCE",
)


@pytest.fixture(scope="session", autouse=True)
def _key_dir_outside_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Signing keys and the trust policy of the whole session live in a temporary key dir.

    Tests never write the user's ~/.config; a test that needs its own key dir monkeypatches
    ``MLWARDEN_KEY_DIR`` on top of this one.
    """
    saved = {name: os.environ.pop(name, None) for name in _KEY_ENV}
    key_dir = tmp_path_factory.mktemp("keys") / "mlwarden-keys"
    os.environ["MLWARDEN_KEY_DIR"] = str(key_dir)
    yield key_dir
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def store(tmp_path: Path) -> LineageStore:
    """An empty embedded store in a temporary folder."""
    s = LineageStore(tmp_path / "store")
    yield s
    s.close()


@pytest.fixture
def fast_spec_text() -> str:
    """YAML of the fast German Credit pipeline."""
    return FAST_SPEC


@pytest.fixture
def fast_spec() -> PipelineSpec:
    """The fast German Credit pipeline, validated."""
    return parse_spec(FAST_SPEC)


def edit_spec(text: str, old: str, new: str) -> PipelineSpec:
    """The spec with one line changed, validated."""
    assert old in text, old
    return parse_spec(text.replace(old, new))


def spec_with_a_bad_row(tmp_path: Path) -> PipelineSpec:
    """The fast pipeline on a 20-row CSV whose row 3 has a text in a numeric column."""
    import pandas as pd

    table = tmp_path / "t.csv"
    frame = pd.DataFrame({"x": [1, 2, 3, 4] * 5, "y": ["a", "b"] * 10}, dtype=object)
    frame.loc[3, "x"] = "oops"
    frame.to_csv(table, index=False)
    schema = tmp_path / "schema.yaml"
    schema.write_text(
        "columns:\n  x: {type: integer, min: 0, max: 10}\n"
        "  y: {type: category, categories: [a, b]}\nlabel: y\n"
    )
    text = FAST_SPEC.replace(
        "  dataset: german\n  label: credit\n  positive: bad\n",
        f"  path: {table}\n  label: y\n  schema: {schema}\n",
    )
    return parse_spec(text)
