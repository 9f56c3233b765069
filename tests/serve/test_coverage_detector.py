"""The coverage detector: region coverage on a known tree, spreading thieves flagged, natural
traffic not, and through the guarded app."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

from mlwarden.errors import DataError, ParameterError
from mlwarden.serve._extraction import (
    BenignTraffic,
    CoverageDetector,
    Detector,
    detection_delay,
    false_positive_rate,
)
from tests.serve.test_app import rows
from tests.serve.test_detect import setup

__all__ = ["setup"]


@pytest.fixture(scope="module")
def phishing(setup: dict[str, Any]) -> dict[str, Any]:
    """test_detect's phishing split and model, with a coverage detector fitted on its traffic."""
    detector = CoverageDetector(n_regions=128, benign_queries=300).fit(setup["benign"])
    return {**setup, "detector": detector}


def _stream(setup: dict[str, Any], frame: pd.DataFrame) -> list[tuple[Any, Any]]:
    vectors = setup["space"].transform(frame)
    return list(zip(vectors, setup["model"].predict_proba(frame), strict=True))


class _Space:
    """A one-column feature space for hand-made partitions."""

    n_features = 1


def test_coverage_and_information_gain_on_a_hand_made_tree() -> None:
    # Three leaves: x < -2, -2 <= x < 12.5, x >= 12.5 (ids from the tree, in that order).
    x = np.array([[-5.0], [1.0], [2.0], [5.0], [20.0], [30.0]] * 10)
    tree = DecisionTreeClassifier(random_state=0).fit(x, [0, 1, 1, 1, 2, 2] * 10)
    leaves = tree.apply(np.array([[-5.0], [5.0], [50.0]])).tolist()
    assert len(set(leaves)) == 3 == tree.get_n_leaves()
    train = np.repeat([[-5.0], [5.0], [50.0]], [20, 60, 20], axis=0)
    benign = BenignTraffic(_Space(), train, train, np.full((len(train), 3), 1 / 3))  # type: ignore[arg-type]
    detector = CoverageDetector(tree, benign_queries=50, n_simulations=50, min_queries=1).fit(
        benign
    )
    assert isinstance(detector, Detector)
    assert detector.regions_ is not None and detector.regions_.tolist() == sorted(leaves)
    mass = np.empty(3)
    mass[np.argsort(leaves)] = (np.array([20, 60, 20]) + 0.5) / 101.5
    np.testing.assert_allclose(detector.mass_, mass)
    weight = -mass * np.log(mass)
    middle = sorted(leaves).index(leaves[1])
    detector.observe_answer("a", [5.0], None)
    assert detector.coverage("a") == pytest.approx(1 / 3)
    assert detector.information_gain("a") == pytest.approx(weight[middle] / weight.sum())
    detector.observe_answer("a", [6.0], None)  # same leaf: nothing new learnt
    assert detector.information_gain("a") == pytest.approx(weight[middle] / weight.sum())
    detector.observe_answer("a", [-3.0], None)
    detector.observe_answer("a", [99.0], None)
    assert detector.coverage("a") == 1.0 and detector.information_gain("a") == pytest.approx(1.0)
    assert detector.coverage("b") == 0.0
    detector.reset("a")
    assert detector.coverage("a") == 0.0
    with pytest.raises(DataError, match="1 features"):
        detector.observe_answer("a", [1.0, 2.0], None)


def test_bad_settings_and_use_before_fit_are_refused() -> None:
    with pytest.raises(ParameterError, match="apply"):
        CoverageDetector(object())  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="benign_queries"):
        CoverageDetector(benign_queries=0)
    with pytest.raises(DataError, match="fit"):
        CoverageDetector().observe_answer("a", [0.0], None)


def test_natural_clients_are_not_flagged(phishing: dict[str, Any]) -> None:
    pool, rng = phishing["pool"], np.random.default_rng(7)
    streams = [_stream(phishing, pool.iloc[rng.permutation(len(pool))[:300]]) for _ in range(10)]
    assert false_positive_rate(phishing["detector"], streams) == 0.0


def test_a_thief_spreading_over_regions_is_flagged_early(phishing: dict[str, Any]) -> None:
    detector, space, pool = phishing["detector"], phishing["space"], phishing["pool"]
    regions = detector.region_index(space.transform(pool))
    # One real row per region, round after round: the same rows a benign client might send,
    # but chosen to explore.
    order = [np.flatnonzero(regions == r) for r in np.unique(regions)]
    picks = [group[i] for i in range(3) for group in order if i < len(group)]
    delay = detection_delay(detector, _stream(phishing, pool.iloc[picks]))
    assert delay is not None and delay <= 100, delay


def test_a_real_row_thief_is_flagged_past_the_benign_volume(phishing: dict[str, Any]) -> None:
    pool = phishing["pool"]
    picks = np.random.default_rng(3).integers(0, len(pool), 3000)
    delay = detection_delay(phishing["detector"], _stream(phishing, pool.iloc[picks]))
    assert delay is not None and 300 < delay <= 3000, delay


def test_the_guarded_app_blocks_a_spreading_thief(serve: Any, phishing_rows: pd.DataFrame) -> None:
    s = serve(
        rate_limit={"rate_per_s": 1e6, "burst": 10**6},
        guards={"extraction": {"coverage": {"enabled": True, "n_regions": 64}}},
    )
    names = [d.name for d in s.g.detectors.detectors]
    assert "coverage" in names
    coverage = s.g.detectors.detectors[names.index("coverage")]
    assert isinstance(coverage, CoverageDetector)
    analyst = s.g.keys.create("predict", "analyst")
    for start in range(0, 200, 10):
        assert s.predict(rows(phishing_rows, 10, start), key=analyst).status_code == 200
    regions = coverage.region_index(s.g.features.transform(phishing_rows))  # type: ignore[union-attr]
    firsts = [int(np.flatnonzero(regions == r)[0]) for r in np.unique(regions)]
    spread = phishing_rows.iloc[firsts].reset_index(drop=True)
    thief = s.g.keys.create("predict", "thief")
    answers = [s.predict(rows(spread, 1, i), key=thief) for i in range(len(spread))]
    codes = [a.status_code for a in answers]
    assert 403 in codes, codes
    assert "coverage: information gain" in answers[codes.index(403)].json()["detail"]
    assert codes[codes.index(403) :] == [403] * (len(codes) - codes.index(403))
    assert s.predict(rows(phishing_rows, 10, 300), key=analyst).status_code == 200
