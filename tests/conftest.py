"""Shared fixtures: a fresh store per test and a small, fast pipeline spec on real data."""

from __future__ import annotations

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
