"""Extraction detectors: no alarm on benign clients, alarms on real attack query streams."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlwarden import datasets
from mlwarden.attacks._distillation import extract_distillation
from mlwarden.attacks._extraction import extract_logistic_pipeline
from mlwarden.errors import DataError
from mlwarden.models._recording import RecordingModel
from mlwarden.serve._extraction import (
    BenignTraffic,
    BoundaryDetector,
    Detector,
    DetectorSuite,
    FeatureSpace,
    OffManifoldDetector,
    PradaDetector,
    RarityDetector,
    detection_delay,
    false_positive_rate,
    shapiro_w,
    top_margin,
)


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    data = datasets.load("phishing")
    X, y = data.X, data.y
    order = np.random.default_rng(0).permutation(len(X))
    cut1, cut2 = int(0.6 * len(X)), int(0.8 * len(X))
    train = X.iloc[order[:cut1]].reset_index(drop=True)
    calib = X.iloc[order[cut1:cut2]].reset_index(drop=True)
    pool = X.iloc[order[cut2:]].reset_index(drop=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(train, y.iloc[order[:cut1]])
    space = FeatureSpace.fit(train, data.schema)
    prada = PradaDetector()
    benign = BenignTraffic(
        space, space.transform(train), space.transform(calib), model.predict_proba(calib)
    )
    boundary = BoundaryDetector().fit(benign)
    off = OffManifoldDetector().fit(benign)
    rarity = RarityDetector().fit(benign)
    suite = DetectorSuite([prada, boundary, off, rarity])
    return {
        "data": data,
        "train": train,
        "pool": pool,
        "model": model,
        "space": space,
        "benign": benign,
        "detectors": {d.name: d for d in (prada, boundary, off, rarity, suite)},
    }


def _stream(setup: dict[str, Any], rows: pd.DataFrame) -> list[tuple[Any, Any]]:
    vectors = setup["space"].transform(rows)
    return list(zip(vectors, setup["model"].predict_proba(rows), strict=True))


def test_benign_clients_raise_no_alarm(setup: dict[str, Any]) -> None:
    pool = setup["pool"]
    rng = np.random.default_rng(5)
    streams = [_stream(setup, pool.iloc[rng.permutation(len(pool))[:300]]) for _ in range(5)]
    for name, detector in setup["detectors"].items():
        assert false_positive_rate(detector, streams) == 0.0, name


def test_uniform_distillation_is_caught(setup: dict[str, Any]) -> None:
    recorder = RecordingModel(setup["model"])
    extract_distillation(
        recorder,
        setup["train"],
        schema=setup["data"].schema,
        source="uniform",
        budgets=(200,),
        n_uniform=20,
        true_model=setup["model"],
        seed=3,
    )
    rows = recorder.rows()
    assert len(rows) == 200
    stream = _stream(setup, rows)
    detectors = setup["detectors"]
    # Measured: 10 (the first test) for each; 30 leaves room for other seeds.
    for name in ("off_manifold", "rarity", "suite"):
        delay = detection_delay(detectors[name], stream)
        assert delay is not None and delay <= 30, (name, delay)
    # Uniform rows in 23 dimensions have near-normal distances: PRADA's known blind spot.
    assert detection_delay(detectors["prada"], stream) is None


def test_equation_solving_is_caught(setup: dict[str, Any]) -> None:
    recorder = RecordingModel(setup["model"])
    result = extract_logistic_pipeline(
        recorder, setup["train"], [], n_uniform=20, true_model=setup["model"]
    )
    assert result.fidelity_uniform is not None and result.fidelity_uniform > 0.99
    rows = recorder.rows().iloc[: result.queries_to_extract]
    stream = _stream(setup, rows)
    assert len(stream) <= 30  # the whole attack: 24 queries, fewer than PRADA's minimum
    detectors = setup["detectors"]
    for name in ("rarity", "suite"):
        delay = detection_delay(detectors[name], stream)
        assert delay is not None and delay <= 15, (name, delay)


def test_suite_keeps_every_verdict(setup: dict[str, Any]) -> None:
    suite = setup["detectors"]["suite"]
    x, proba = _stream(setup, setup["pool"].iloc[:1])[0]
    verdict = suite.observe_answer("someone", x, proba)
    assert [p.detector for p in verdict.parts] == ["prada", "boundary", "off_manifold", "rarity"]
    assert not verdict.alarm
    suite.reset("someone")
    assert isinstance(suite, Detector)


def test_shapiro_w_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    for sample in (rng.normal(size=50), rng.exponential(size=400), rng.integers(0, 4, 999)):
        assert shapiro_w(sample) == pytest.approx(stats.shapiro(sample).statistic, abs=1e-9)
    assert shapiro_w(np.ones(40)) == 1.0


def test_prada_statistic_on_synthetic_distances() -> None:
    rng = np.random.default_rng(1)
    delta = PradaDetector().delta
    normal = rng.normal(5.0, 1.0, 500)
    assert PradaDetector._statistic(normal) > delta
    # Many near-duplicates and a few long jumps, as in perturbation-based synthetic queries.
    skewed = np.concatenate([rng.exponential(0.05, 450), rng.uniform(3.0, 8.0, 50)])
    assert PradaDetector._statistic(skewed) < delta


def test_prada_on_query_streams() -> None:
    rng = np.random.default_rng(2)
    prada = PradaDetector(min_distances=30)
    natural = rng.normal(size=(300, 20))
    assert detection_delay(prada, ((x, [0.6, 0.4]) for x in natural)) is None
    # Jacobian-augmentation style: a few seeds, then small steps around them (Papernot et al.).
    seeds = rng.normal(size=(10, 20))
    steps = seeds[rng.integers(0, 10, 290)] + rng.normal(0.0, 0.02, (290, 20))
    synthetic = np.vstack([seeds, steps])
    delay = detection_delay(prada, ((x, [0.6, 0.4]) for x in synthetic))
    assert delay is not None and delay <= 60


def test_state_stays_bounded(setup: dict[str, Any]) -> None:
    rng = np.random.default_rng(3)
    prada = PradaDetector(max_per_class=16, max_distances=50, max_clients=3, min_distances=20)
    boundary = BoundaryDetector(window=40, max_clients=3).fit(setup["benign"])
    width = setup["space"].n_features
    for i in range(2000):
        x = rng.normal(size=width)
        prada.observe("a", x, int(i % 2))
        boundary.observe("a", x, [0.5, 0.5])
    assert prada.state_size("a") <= 2 * 16 + 50
    assert boundary.state_size("a") == 40
    for client in "bcdefg":
        prada.observe(client, rng.normal(size=width), 0)
        boundary.observe(client, None, [0.9, 0.1])
    assert prada.n_clients == 3 and boundary.n_clients == 3
    assert prada.state_size("a") == 0  # least recently seen: forgotten


def test_detectors_refuse_bad_use() -> None:
    with pytest.raises(DataError):
        BoundaryDetector().observe("a", None, [0.5, 0.5])
    prada = PradaDetector()
    prada.observe("a", np.zeros(3), 0)
    with pytest.raises(DataError):
        prada.observe("a", np.zeros(4), 0)
    with pytest.raises(ValueError):
        PradaDetector(min_distances=3)
    assert top_margin([0.2, 0.5, 0.3]) == pytest.approx([0.2])


def test_feature_space_unknown_categories_and_missing() -> None:
    data = datasets.load("adult")
    X = data.X.iloc[:2000]
    space = FeatureSpace.fit(X, data.schema)
    blocks = {name: where for name, where, _ in space.blocks()}
    row = X.iloc[0].to_dict()
    row.update({"workclass": "Astronaut", "age": None, "hours_per_week": float("nan")})
    del row["education"]
    vector = space.transform(row)
    assert vector.shape == (space.n_features,)
    assert np.all(vector[blocks["workclass"]] == 0.0)  # unknown category
    assert np.all(vector[blocks["education"]] == 0.0)  # absent column
    assert vector[blocks["age"]][0] == 0.0  # missing: the median, centred
    assert vector[blocks["hours_per_week"]][0] == 0.0
    known = vector[blocks["sex"]]
    assert sorted(known.tolist()) == [0.0, pytest.approx(np.sqrt(0.5))]
    # The one-row dict path and the batch DataFrame path agree, missing values included.
    frame = X.iloc[:50].copy()
    frame.loc[frame.index[0], "workclass"] = "Astronaut"
    frame.loc[frame.index[1], "age"] = np.nan
    batch = space.transform(frame)
    rows = space.transform(frame.to_dict("records"))
    np.testing.assert_allclose(batch, rows)
    np.testing.assert_allclose(batch[0], space.transform(frame.iloc[0].to_dict()))
    with pytest.raises(DataError):
        space.transform({"age": "old"})


def test_the_suite_fits_each_detector_on_the_same_benign_traffic(setup: dict[str, Any]) -> None:
    space, model = setup["space"], setup["model"]
    train, calib = setup["train"], setup["pool"].iloc[:300]
    benign = BenignTraffic(
        space, space.transform(train), space.transform(calib), model.predict_proba(calib)
    )
    suite = DetectorSuite(
        [PradaDetector(), BoundaryDetector(), OffManifoldDetector(), RarityDetector()]
    )
    assert suite.fit(benign) is suite and isinstance(suite, Detector)
    prada, boundary, off, rarity = suite.detectors
    assert isinstance(prada, PradaDetector) and prada.n_features_ == space.n_features
    assert isinstance(boundary, BoundaryDetector)
    assert boundary.margin_ == BoundaryDetector().fit(benign).margin_
    assert isinstance(off, OffManifoldDetector)
    assert off.radius_ == OffManifoldDetector().fit(benign).radius_
    assert isinstance(rarity, RarityDetector)
    assert rarity.threshold_ == RarityDetector().fit(benign).threshold_
    assert suite.catches == {"perturbation", "boundary", "uniform"}
    with pytest.raises(DataError):
        boundary.observe_answer("a", np.zeros(space.n_features + 1), [0.5, 0.5])
    with pytest.raises(DataError):
        BenignTraffic(space, benign.train[:, :3], benign.held_out, benign.proba)


def test_a_detector_of_ones_own_joins_a_suite_beside_the_built_in_ones(
    setup: dict[str, Any],
) -> None:
    from mlwarden.serve._verdict import Verdict

    class EveryThird:  # the Detector protocol only: no steps
        name = "every-third"
        catches: frozenset[str] = frozenset()

        def __init__(self) -> None:
            self.seen: dict[str, int] = {}

        def fit(self, benign: BenignTraffic) -> EveryThird:
            return self

        def observe_answer(self, client: str, x: Any, proba: Any) -> Verdict:
            n = self.seen[client] = self.seen.get(client, 0) + 1
            return Verdict(
                detector=self.name, client=client, alarm=n % 3 == 0, statistic=float(n),
                threshold=3.0, n=n, reason="every third query",
            )  # fmt: skip

        def reset(self, client: str) -> None:
            self.seen.pop(client, None)

    space, model = setup["space"], setup["model"]
    calib = setup["pool"].iloc[:300]
    benign = BenignTraffic(
        space, space.transform(setup["train"]), space.transform(calib), model.predict_proba(calib)
    )
    suite = DetectorSuite([BoundaryDetector(), EveryThird(), RarityDetector()]).fit(benign)
    alone = BoundaryDetector().fit(benign)
    rows = space.transform(calib.iloc[:6])
    for i, (x, p) in enumerate(zip(rows, model.predict_proba(calib.iloc[:6]), strict=True), 1):
        verdict = suite.observe_answer("c", x, p)
        assert [part.detector for part in verdict.parts] == ["boundary", "every-third", "rarity"]
        assert verdict.parts[1].alarm == (i % 3 == 0) and verdict.alarm >= verdict.parts[1].alarm
        assert verdict.parts[0] == alone.observe_answer("c", x, p)
