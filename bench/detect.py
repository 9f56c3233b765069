"""Per-client extraction detectors on real attack streams: delays, false alarms, overhead.

For phishing and adult, a gradient-boosting model (the distillation target) and a logistic
pipeline (the equation-solving target) are trained on 60% of the rows; 20% calibrate the
detectors (benign margins, the off-manifold radius) and the last 20% feed benign clients and
the "public" thief. Streams are the rows the attacks actually send, recorded by a wrapping
adapter, in order:

* benign: 10 clients of 500 held-out rows in random order;
* distillation-uniform: Knockoff-style rows uniform over the schema (Orekondy et al. 2019);
* distillation-public: held-out rows of the same distribution, the case PRADA misses;
* equation-solving: Tramèr et al. (2016) §4.1.1 against the logistic pipeline.

Prints, per detector, the queries until the first alarm on each attack stream, the share of
benign clients ever alarmed, the lowest benign PRADA W (its δ calibration) and the
per-query cost of ``observe_answer``. Run by hand: ``python bench/detect.py`` (about 1 min).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from mlwarden import datasets
from mlwarden.attacks._distillation import extract_distillation
from mlwarden.attacks._extraction import extract_logistic_pipeline
from mlwarden.models._recording import RecordingModel
from mlwarden.serve._extraction import (
    BenignTraffic,
    BoundaryDetector,
    CoverageDetector,
    Detector,
    DetectorSuite,
    FeatureSpace,
    OffManifoldDetector,
    PradaDetector,
    RarityDetector,
    detection_delay,
    false_positive_rate,
)


def models(X: pd.DataFrame, y: pd.Series, categorical: list[str]) -> tuple[Any, Any]:
    numeric = [c for c in X.columns if c not in categorical]
    gbm = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        (
                            "cat",
                            OrdinalEncoder(
                                handle_unknown="use_encoded_value",
                                unknown_value=np.nan,
                                encoded_missing_value=np.nan,
                            ),
                            categorical,
                        ),
                        ("num", "passthrough", numeric),
                    ]
                ),
            ),
            (
                "model",
                HistGradientBoostingClassifier(
                    categorical_features=[True] * len(categorical) + [False] * len(numeric),
                    random_state=0,
                ),
            ),
        ]
    ).fit(X, y)
    lr = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        (
                            "cat",
                            make_pipeline(
                                SimpleImputer(strategy="most_frequent"),
                                OneHotEncoder(handle_unknown="ignore"),
                            ),
                            categorical,
                        ),
                        ("num", StandardScaler(), numeric),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=2000)),
        ]
    ).fit(X, y)
    return gbm, lr


def fitted_detectors(
    space: FeatureSpace, train: pd.DataFrame, calib: pd.DataFrame, model: Any
) -> list[Detector]:
    benign = BenignTraffic(
        space, space.transform(train), space.transform(calib), model.predict_proba(calib)
    )
    boundary = BoundaryDetector().fit(benign)
    off = OffManifoldDetector().fit(benign)
    rarity = RarityDetector().fit(benign)
    coverage = CoverageDetector().fit(benign)
    prada = PradaDetector()
    return [
        prada,
        boundary,
        off,
        rarity,
        coverage,
        DetectorSuite([prada, boundary, off, rarity, coverage]),
    ]


def stream(space: FeatureSpace, model: Any, rows: pd.DataFrame) -> list[tuple[Any, Any]]:
    return list(zip(space.transform(rows), model.predict_proba(rows), strict=True))


def min_benign_w(prada: PradaDetector, streams: list[list[tuple[Any, Any]]]) -> float:
    lowest = 1.0
    for i, s in enumerate(streams):
        client = f"w{i}"
        for x, p in s:
            verdict = prada.observe_answer(client, x, p)
            if verdict.statistic is not None:
                lowest = min(lowest, verdict.statistic)
        prada.reset(client)
    return lowest


def overhead_us(detector: Detector, s: list[tuple[Any, Any]]) -> float:
    detector.reset("timing")
    start = time.perf_counter()
    for x, p in s:
        detector.observe_answer("timing", x, p)
    detector.reset("timing")
    return (time.perf_counter() - start) / len(s) * 1e6


#: Budgets at which the public-data thief's surrogate agreement is measured.
BUDGETS = (100, 200, 300, 400, 500, 600, 700, 800, 1000, 1200, 1500, 2000, 2500, 3000)


def public_thief(
    detectors: list[Detector],
    space: FeatureSpace,
    model: Any,
    rows: pd.DataFrame,
    curve: dict[int, float],
) -> None:
    """When each detector flags the public-data thief, and its copy's agreement by then."""
    first90 = next((b for b in sorted(curve) if curve[b] >= 0.9), None)
    print(f"public-data thief: agreement {curve}; first >= 90% at {first90} queries")
    for detector in detectors:
        delay = detection_delay(detector, stream(space, model, rows))
        if delay is None:
            print(f"  {detector.name:<14} never flagged in {len(rows)} queries")
            continue
        before = [b for b in sorted(curve) if b <= delay]
        agreement = f"{curve[before[-1]]:.3f} at {before[-1]}" if before else "n/a"
        print(f"  {detector.name:<14} flagged at query {delay}; agreement by then {agreement}")


def run(name: str) -> None:
    data = datasets.load(name)
    X, y = data.X, data.y
    categorical = [c for c in X.columns if not data.schema.columns[c].is_numeric]
    order = np.random.default_rng(0).permutation(len(X))
    cut1, cut2 = int(0.6 * len(X)), int(0.8 * len(X))
    train, calib, pool = (X.iloc[order[a:b]].reset_index(drop=True) for a, b in
                          ((0, cut1), (cut1, cut2), (cut2, len(X))))  # fmt: skip
    y_train = y.iloc[order[:cut1]].reset_index(drop=True)
    gbm, lr = models(train, y_train, categorical)
    space = FeatureSpace.fit(train, data.schema)
    rng = np.random.default_rng(1)

    attacks: dict[str, tuple[Any, pd.DataFrame]] = {}
    curve: dict[int, float] = {}
    for source in ("uniform", "public"):
        recorder = RecordingModel(gbm)
        result = extract_distillation(
            recorder, train, schema=data.schema, source=source, X_public=pool,
            budgets=BUDGETS if source == "public" else (1000,), X_test=calib,
            batch_size=100, n_uniform=50, true_model=gbm, seed=2,
        )  # fmt: skip
        attacks[f"distillation-{source}"] = (gbm, recorder.rows())
        if source == "public":
            curve = {p.budget: p.fidelity_test or 0.0 for p in result.curve}
    recorder = RecordingModel(lr)
    reference = train.copy()
    for c in categorical:
        reference[c] = reference[c].fillna(reference[c].mode().iloc[0])
    extract_logistic_pipeline(recorder, reference, categorical, n_uniform=50, true_model=lr)
    attacks["equation-solving"] = (lr, recorder.rows())

    for model_name, model in (("gbm", gbm), ("logistic", lr)):
        detectors = fitted_detectors(space, train, calib, model)
        benign = [
            stream(space, model, pool.iloc[rng.permutation(len(pool))[:500]]) for _ in range(10)
        ]
        prada = detectors[0]
        assert isinstance(prada, PradaDetector)
        print(f"\n{name} / {model_name}: lowest benign PRADA W = {min_benign_w(prada, benign):.3f}")
        mine = {k: v for k, v in attacks.items() if v[0] is model}
        header = (
            f"{'detector':<14}{'FPR':>6}" + "".join(f"{k:>22}" for k in mine) + f"{'µs/query':>10}"
        )
        print(header)
        for detector in detectors:
            fpr = false_positive_rate(detector, benign)
            delays = []
            for _, rows in mine.values():
                delay = detection_delay(detector, stream(space, model, rows))
                delays.append(f"{delay} / {len(rows)}" if delay else f"- / {len(rows)}")
            cost = overhead_us(detector, benign[0] * 4)
            print(f"{detector.name:<14}{fpr:>6.2f}" + "".join(f"{d:>22}" for d in delays)
                  + f"{cost:>10.1f}")  # fmt: skip

        if model is gbm:
            public_thief(detectors, space, model, attacks["distillation-public"][1], curve)

    row = pool.iloc[0].to_dict()
    start = time.perf_counter()
    for _ in range(2000):
        space.transform(row)
    print(f"FeatureSpace.transform(one dict): {(time.perf_counter() - start) / 2000 * 1e6:.1f} µs")


def main() -> None:
    for name in ("phishing", "adult"):
        run(name)


if __name__ == "__main__":
    main()
