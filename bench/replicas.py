"""Per-row cost of the extraction detectors on shared (Redis) state against in-process state.

Each row a client sends goes through the default detector suite (PRADA, boundary, off-manifold,
rarity, and the coverage detector when ``--coverage``). In process, a row is a few array
operations; with ``state: redis://`` the suite sends every detector's window push and log
exchange for the row in one MULTI/EXEC pipeline: one Redis round trip per row. This prints the
microseconds per row of each, measured in the same run on the same rows, and their ratio.

    python bench/replicas.py [--rows 2000] [--rounds 3] [--coverage]

Needs ``redis-server`` on the PATH (``bash scripts/redis-for-tests.sh``); it starts its own on
a free port, without persistence, and stops it.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mlwarden import datasets
from mlwarden.serve import SharedState
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
)
from mlwarden.serve._metrics import ServerMetrics
from mlwarden.serve._redis_state import RedisState
from mlwarden.serve._state import LocalState


def _suite(traffic: BenignTraffic, coverage: bool) -> DetectorSuite:
    detectors: list[Detector] = [
        PradaDetector(),
        BoundaryDetector(),
        OffManifoldDetector(),
        RarityDetector(),
    ]
    if coverage:
        detectors.append(CoverageDetector())
    return DetectorSuite(detectors).fit(traffic)


def _per_row_us(suite: DetectorSuite, vectors: np.ndarray, proba: np.ndarray, tag: str) -> float:
    start = time.perf_counter()
    for i, (x, p) in enumerate(zip(vectors, proba, strict=True)):
        suite.observe_answer(f"{tag}-{i % 20}", x, p)  # 20 clients, as traffic interleaves
    return (time.perf_counter() - start) / len(vectors) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--coverage", action="store_true", help="add the coverage detector")
    args = parser.parse_args()
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server is not installed: bash scripts/redis-for-tests.sh")
    from sklearn.linear_model import LogisticRegression

    data = datasets.load("phishing")
    X, y = data.X, data.y
    model = LogisticRegression(max_iter=1000).fit(X, y)
    space = FeatureSpace.fit(X, data.schema)
    traffic = BenignTraffic(space, space.transform(X), space.transform(X), model.predict_proba(X))
    rows = X.sample(n=args.rows, replace=True, random_state=0)
    vectors, proba = space.transform(rows), model.predict_proba(rows)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        state = RedisState(SharedState(url=url), "bench", ServerMetrics())
        for _ in range(100):
            try:
                state.redis.ping()
                break
            except Exception:
                time.sleep(0.05)
        print(f"{args.rows} rows of phishing through the detector suite, 20 clients")
        print("round  in-process us/row  redis us/row  ratio")
        for r in range(1, args.rounds + 1):
            local = _suite(traffic, args.coverage)
            local.share(LocalState())
            shared = _suite(traffic, args.coverage)
            shared.share(state)
            a = _per_row_us(local, vectors, proba, f"local{r}")
            b = _per_row_us(shared, vectors, proba, f"shared{r}")
            print(f"{r:5d}  {a:17.0f}  {b:12.0f}  {b / a:5.1f}x")
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
