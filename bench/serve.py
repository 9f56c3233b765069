"""The guarded server under load, beside a plain FastAPI app serving the same model version,
for each kind of model the server runs: scikit-learn, ONNX and torch.

Trains and registers the demo phishing model (``pipelines/phishing.yaml``: gradient boosting,
the realistic one) in a temporary store, and imports two more on the same data through the
pipeline: an ONNX logistic regression (skl2onnx) and a torch MLP saved with its architecture
(``save_torch_classifier``). Each registered version is served twice, each under uvicorn (one
worker) in its own subprocess on 127.0.0.1:

* guarded: ``create_app(build_server(...))`` with the default guards (extraction detectors
  blocking, drift on, decision log, metrics); only the rate limit is raised so that it never
  refuses the benchmark;
* plain: one ``POST /v1/predict`` taking ``{"rows": [...]}`` as a plain dict, building the
  DataFrame (for ONNX and torch, the numeric matrix in the model's column order) and calling
  the same loaded model's ``predict_proba``: no auth, no validation.

Two loads per server, guarded and plain alternately (the server not under load is suspended
with SIGSTOP so its background threads cannot steal CPU), one held-out row per request:

* one connection: requests one after another, for the latency a single caller sees;
* 50 connections: an asyncio + httpx generator keeps 50 workers busy (one API key each).

Reported per run: throughput, client-side p50/p99 latency, errors (any non-200), and the
server process's CPU time per request (``/proc/<pid>/stat`` utime + stime, all threads, read
before and after the measured window).

Then, for the scikit-learn model, the extraction detectors: detection delay (queries until the
first alarm) and benign false-positive rate of PRADA alone and of the server's default suite,
on the streams of ``bench/detect.py`` (benign clients, uniform and public-data distillation).

Goals (issue 16): p50 overhead <= 1 ms at one connection; server CPU per request <= 1.3x plain;
throughput ratio >= 0.9 at 50 connections; zero errors. Run by hand:
``.venv/bin/python bench/serve.py`` (``--kinds``, ``--duration``, ``--single``, ``--warmup``
and ``--rounds`` change what runs and for how long; ``--redis`` keeps the guarded server's
state in a Redis it starts, as replicas would).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "pipelines" / "phishing.yaml"
MODEL_REF = "phishing@latest"
#: The registered version each kind serves (the ONNX and torch ones are imported, see KIND_SPEC).
REFS = {"sklearn": MODEL_REF, "onnx": "phishing-onnx@latest", "torch": "phishing-torch@latest"}
STORE_ENV = "MLWARDEN_BENCH_STORE"
MODEL_ENV = "MLWARDEN_BENCH_MODEL"
STATE_ENV = "MLWARDEN_BENCH_STATE"
CONNECTIONS = 50
THROUGHPUT_RATIO_TARGET = 0.9
P50_OVERHEAD_TARGET_MS = 1.0
CPU_RATIO_TARGET = 1.3
KIND_SPEC = """\
name: NAME
data: {dataset: phishing, label: Result, positive: phishing}
split: {test_size: 0.25, seed: 7}
model: {import: FILE, columns: COLUMNS}
checks:
  - {check: performance_floor, metric: roc_auc, min: 0.9}
register: {name: NAME}
"""
RATE_LIMIT = {"rate_per_s": 1e9, "burst": 10**9}


# --------------------------------------------------------------------------- the two servers


def guarded_app() -> Any:
    """The guarded app of the store in ``$MLWARDEN_BENCH_STORE``, default guards."""
    from mlwarden.lineage import LineageStore
    from mlwarden.serve import Deployment, build_server, create_app

    root = Path(os.environ[STORE_ENV])
    state = os.environ.get(STATE_ENV)  # --redis: guard state shared through Redis
    deployment = Deployment.single(
        os.environ[MODEL_ENV], rate_limit=RATE_LIMIT, **({"state": state} if state else {})
    )
    g = build_server(LineageStore(root), deployment, serve_db=root / "serve.db")
    return create_app(g)


def plain_app() -> Any:
    """The same registered version behind a bare FastAPI endpoint: no guards at all."""
    from fastapi import FastAPI

    from mlwarden.lineage import LineageStore
    from mlwarden.serve._runtime import load_served, training_reference

    store = LineageStore(Path(os.environ[STORE_ENV]))
    model = load_served(store, os.environ[MODEL_ENV])
    features = training_reference(store, model)[0].features
    classes = [str(c) for c in model.classes]
    # A model that reads a bare numeric matrix (ONNX, torch) gets one, as a hand-written
    # server would give it: the baseline pays for no table the guarded server does not build.
    order = model.matrix_order(features)
    app = FastAPI(title="plain")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/predict")
    def predict(body: dict[str, Any]) -> dict[str, Any]:
        if order is not None and model.adapter is not None:
            matrix = np.array([[row[c] for c in order] for row in body["rows"]], dtype=np.float64)
            proba = model.adapter.predict_proba(matrix)
        else:
            proba = model.predict_proba(pd.DataFrame(body["rows"], columns=features))
        labels = np.asarray(classes)[proba.argmax(axis=1)]
        return {
            "predictions": [
                {"label": str(label), "probabilities": dict(zip(classes, p.tolist(), strict=True))}
                for label, p in zip(labels, proba, strict=True)
            ]
        }

    return app


def serve_main(kind: str, port: int) -> None:
    """Subprocess entry: build the app, serve it with one uvicorn worker until SIGTERM."""
    import uvicorn

    app = guarded_app() if kind == "guarded" else plain_app()
    # Keep-alive longer than the worst queueing delay: otherwise uvicorn closes a connection the
    # client is about to reuse, and the request fails with a ReadError on either server.
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=60,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    kind: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server process, all threads."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_server(kind: str, store: Path, ref: str) -> ServerProcess:
    port = free_port()
    env = {**os.environ, STORE_ENV: str(store), MODEL_ENV: ref}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", kind, "--port", str(port)]
    return ServerProcess(kind, port, subprocess.Popen(cmd, env=env))


def start_redis() -> subprocess.Popen[bytes]:
    """A redis-server on a free port, without persistence, for the guarded servers' state
    (``$MLWARDEN_BENCH_STATE``). Its CPU is not in the server CPU figures."""
    import shutil

    server = shutil.which("redis-server")
    if server is None:
        sys.exit("--redis needs redis-server on the PATH: bash scripts/redis-for-tests.sh")
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [server, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    os.environ[STATE_ENV] = f"redis://127.0.0.1:{port}/0"
    print(f"guarded servers keep their guard state in Redis ({os.environ[STATE_ENV]})")
    time.sleep(0.5)  # the guarded server refuses to start (fail closed) without it
    return process


def wait_healthy(server: ServerProcess, timeout_s: float = 180.0) -> None:
    import httpx2 as httpx  # the HTTP client the test extra installs (httpx API)

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.kind} server exited with {server.proc.returncode}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{server.kind} server not healthy after {timeout_s} s")


# --------------------------------------------------------------------------- load generator


@dataclass
class RunResult:
    kind: str
    requests: int
    seconds: float
    latencies_ms: np.ndarray
    statuses: Counter[int]
    server_cpu_s: float
    client_cpu_s: float

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu_s / max(self.requests, 1) * 1000.0


class Clients:
    """50 simulated clients: each its own API key and its own random order of held-out rows,
    continued across runs so no client repeats a row before it went through all of them."""

    def __init__(self, rows: list[dict[str, Any]], keys: list[str]) -> None:
        rng = np.random.default_rng(0)
        self.rows = rows
        self.keys = keys
        self.orders = [rng.permutation(len(rows)) for _ in keys]
        self.position = [0] * len(keys)

    def next_body(self, i: int) -> dict[str, Any]:
        order = self.orders[i]
        row = self.rows[int(order[self.position[i] % len(order)])]
        self.position[i] += 1
        return {"rows": [row]}


async def _load(
    server: ServerProcess,
    clients: Clients,
    warmup_s: float,
    duration_s: float,
    auth: bool,
    connections: int,
) -> tuple[list[float], Counter[int], int, float, float, float]:
    import httpx2 as httpx  # the HTTP client the test extra installs (httpx API)

    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    loop_start = time.perf_counter()
    window_start = loop_start + warmup_s
    window_end = window_start + duration_s
    cpu_marks: dict[str, float] = {}

    async def worker(i: int, client: httpx.AsyncClient) -> None:
        headers = {"Authorization": f"Bearer {clients.keys[i]}"} if auth else {}
        url = f"{server.url}/v1/predict"
        while True:
            started = time.perf_counter()
            if started >= window_end:
                return
            try:
                response = await client.post(url, json=clients.next_body(i), headers=headers)
                status = response.status_code
            except httpx.HTTPError as exc:
                status = -1
                if window_start <= started:
                    print(f"  client error: {type(exc).__name__}: {exc}", flush=True)
            done = time.perf_counter()
            if window_start <= started and done <= window_end:
                latencies.append((done - started) * 1000.0)
                statuses[status] += 1

    async def marks() -> None:
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        cpu_marks["server0"], cpu_marks["client0"] = server.cpu_s(), time.process_time()
        await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
        cpu_marks["server1"], cpu_marks["client1"] = server.cpu_s(), time.process_time()

    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        await asyncio.gather(marks(), *(worker(i, client) for i in range(connections)))
    # Requests that straddle the window end are dropped, those completed in it counted.
    return (
        latencies,
        statuses,
        len(latencies),
        duration_s,
        cpu_marks["server1"] - cpu_marks["server0"],
        cpu_marks["client1"] - cpu_marks["client0"],
    )


def load_run(
    server: ServerProcess,
    clients: Clients,
    warmup_s: float,
    duration_s: float,
    connections: int = CONNECTIONS,
) -> RunResult:
    latencies, statuses, n, seconds, server_cpu, client_cpu = asyncio.run(
        _load(server, clients, warmup_s, duration_s, server.kind == "guarded", connections)
    )
    return RunResult(
        server.kind, n, seconds, np.asarray(latencies), statuses, server_cpu, client_cpu
    )


def print_run(label: str, r: RunResult) -> None:
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(r.statuses.items()))
    print(
        f"{label} {r.kind:<8}{r.throughput:>9.1f} req/s  p50 {r.pct(50):6.2f} ms  "
        f"p99 {r.pct(99):6.2f} ms  errors {r.errors}  server CPU {r.cpu_ms_per_request:5.2f} "
        f"ms/req  client CPU {r.client_cpu_s / r.seconds:4.2f} cores  [{codes}]",
        flush=True,
    )


# --------------------------------------------------------------------------- detectors


def detector_comparison(store_root: Path) -> dict[str, Any]:
    """PRADA alone and the server's default suite on the served model's streams."""
    from mlwarden.attacks._distillation import extract_distillation
    from mlwarden.lineage import LineageStore
    from mlwarden.models import RecordingModel
    from mlwarden.serve._extraction import (
        FeatureSpace,
        PradaDetector,
        detection_delay,
        false_positive_rate,
    )
    from mlwarden.serve._runtime import load_served, training_reference
    from mlwarden.serve._server import CALIBRATION_ROWS, default_detectors

    store = LineageStore(store_root)
    served = load_served(store, MODEL_REF)
    schema, reference = training_reference(store, served)
    test = pd.read_parquet(
        io.BytesIO(store.read_artifact(served.version.manifest.artifacts["test"]))
    )[schema.features]
    store.close()
    # As build_server: detectors calibrated on up to 2000 held-out rows; the benign clients
    # and the public-data thief use the held-out rows the calibration did not see.
    calib = test.sample(n=min(CALIBRATION_ROWS, len(test)), random_state=0)
    pool = test.drop(index=calib.index).reset_index(drop=True)
    calib = calib.reset_index(drop=True)
    space = FeatureSpace.fit(reference, schema)
    suite = default_detectors(served, reference, calib, space)
    estimator = served.adapter.estimator

    def stream(rows: pd.DataFrame) -> list[tuple[Any, Any]]:
        return list(zip(space.transform(rows), served.predict_proba(rows), strict=True))

    rng = np.random.default_rng(1)
    per_client = min(500, len(pool))
    benign = [stream(pool.iloc[rng.permutation(len(pool))[:per_client]]) for _ in range(10)]
    attacks: dict[str, list[tuple[Any, Any]]] = {}
    for source in ("uniform", "public"):
        recorder = RecordingModel(estimator)
        extract_distillation(
            recorder, reference, schema=schema, source=source, X_public=pool,
            budgets=(1000,), n_uniform=50, true_model=estimator, seed=2,
        )  # fmt: skip
        attacks[f"distillation-{source}"] = stream(recorder.rows())
    detectors = [("PRADA alone", PradaDetector())]
    detectors += [(f"  {d.name}", d) for d in suite.detectors[1:]]
    detectors += [("server suite", suite)]
    print(
        f"\nextraction detectors on {served.ref} ({type(estimator).__name__}); benign: 10 "
        f"clients x {per_client} held-out rows not used for calibration; delay = queries to "
        "the first alarm / stream length"
    )
    print(
        "equation solving: skipped, the registered demo model is gradient boosting, not "
        "logistic (bench/detect.py runs it against a logistic pipeline)"
    )
    print(f"{'detector':<16}{'FPR':>6}" + "".join(f"{k:>24}" for k in attacks))
    summary: dict[str, Any] = {}
    for label, detector in detectors:
        fpr = false_positive_rate(detector, benign)
        delays = {k: detection_delay(detector, s) for k, s in attacks.items()}
        cells = "".join(
            f"{(f'{d} / {len(attacks[k])}' if d else f'- / {len(attacks[k])}'):>24}"
            for k, d in delays.items()
        )
        print(f"{label:<16}{fpr:>6.2f}{cells}")
        summary[label.strip()] = (fpr, delays)
    return summary


# --------------------------------------------------------------------------- main


def train(store_root: Path) -> None:
    from mlwarden.lineage import LineageStore
    from mlwarden.pipeline import LocalExecutor, load_spec

    store = LineageStore(store_root)
    try:
        result = LocalExecutor(store).run(load_spec(SPEC))
        if result.status != "completed":
            raise RuntimeError(f"pipeline {result.status}: {result.error}")
    finally:
        store.close()


def import_kinds(store_root: Path, kinds: list[str]) -> None:
    """Register an ONNX logistic regression and a torch MLP (saved with its architecture),
    fitted on the sklearn version's training split, through the pipeline's import path."""
    from mlwarden.lineage import LineageStore
    from mlwarden.pipeline import LocalExecutor, parse_spec
    from mlwarden.serve._runtime import load_served, training_reference

    store = LineageStore(store_root)
    try:
        served = load_served(store, MODEL_REF)
        schema, _ = training_reference(store, served)
        train_sha = served.version.manifest.artifacts["train"]
        train_frame = pd.read_parquet(io.BytesIO(store.read_artifact(train_sha)))
        X = train_frame[schema.features].to_numpy(np.float32)
        y = (train_frame[schema.label] == "phishing").to_numpy()
        folder = store_root.parent
        files = {}
        if "onnx" in kinds:
            files["onnx"] = folder / "model.onnx"
            files["onnx"].write_bytes(_onnx_model(X, y))
        if "torch" in kinds:
            files["torch"] = folder / "model.safetensors"
            files["torch"].write_bytes(_torch_model(X, y))
        for kind, path in files.items():
            name = REFS[kind].split("@")[0]
            # fitted on the schema's column order: the import records it (model.columns)
            text = (
                KIND_SPEC.replace("NAME", name)
                .replace("FILE", path.name)
                .replace("COLUMNS", json.dumps(schema.features))
            )
            result = LocalExecutor(store).run(parse_spec(text, base=folder))
            if result.status != "completed":
                raise RuntimeError(f"importing the {kind} model: {result.status}: {result.error}")
    finally:
        store.close()


def _onnx_model(X: np.ndarray, y: np.ndarray) -> bytes:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    labels = np.where(y, "phishing", "legitimate")
    model = LogisticRegression(max_iter=1000).fit(X, labels)
    return bytes(to_onnx(model, X[:1]).SerializeToString())


def _torch_model(X: np.ndarray, y: np.ndarray) -> bytes:
    import torch
    from torch import nn

    from mlwarden.models import save_torch_classifier

    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(X.shape[1], 64), nn.ReLU(), nn.Linear(64, 2))
    x, t = torch.tensor(X), torch.tensor(y.astype(np.int64))
    optimiser = torch.optim.Adam(module.parameters(), lr=0.01)
    for _ in range(300):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(module(x), t).backward()
        optimiser.step()
    return save_torch_classifier(module.eval(), ["legitimate", "phishing"], X.shape[1])


def held_out_rows(store_root: Path, ref: str = MODEL_REF) -> tuple[list[dict[str, Any]], str]:
    from mlwarden.lineage import LineageStore
    from mlwarden.serve._runtime import load_served, training_reference

    store = LineageStore(store_root)
    served = load_served(store, ref)
    features = training_reference(store, served)[0].features
    test = pd.read_parquet(
        io.BytesIO(store.read_artifact(served.version.manifest.artifacts["test"]))
    )[features]
    store.close()
    rows = [{k: v.item() if hasattr(v, "item") else v for k, v in r.items()}
            for r in test.to_dict("records")]  # fmt: skip
    return rows, served.ref


def make_keys(store_root: Path) -> list[str]:
    from mlwarden.serve import SERVE_DB
    from mlwarden.serve._keys import KeyStore

    keys = KeyStore(store_root / SERVE_DB)
    try:
        return [keys.create("predict", f"bench-client-{i}") for i in range(CONNECTIONS)]
    finally:
        keys.close()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


@dataclass
class KindResult:
    """One model kind's runs: (guarded, plain) pairs at one connection and at 50."""

    kind: str
    ref: str
    single: list[tuple[RunResult, RunResult]]
    loaded: list[tuple[RunResult, RunResult]]


def bench_kind(kind: str, store_root: Path, keys: list[str], args: Any) -> KindResult:
    """Serve ``kind``'s version guarded and plain; measure both loads, alternately."""
    rows, ref = held_out_rows(store_root, REFS[kind])
    servers = {which: start_server(which, store_root, ref) for which in ("guarded", "plain")}
    single: list[tuple[RunResult, RunResult]] = []
    loaded: list[tuple[RunResult, RunResult]] = []
    try:
        for server in servers.values():
            wait_healthy(server)
        print(f"\n--- {kind}: {ref}, {len(rows)} held-out rows", flush=True)
        clients = Clients(rows, keys)
        for _ in range(args.rounds):
            for connections, into, seconds in (
                (1, single, args.single),
                (CONNECTIONS, loaded, args.duration),
            ):
                pair = []
                for which, other in (("guarded", "plain"), ("plain", "guarded")):
                    servers[other].pause()
                    servers[which].resume()
                    run = load_run(servers[which], clients, args.warmup, seconds, connections)
                    print_run(f"{kind:<7} {connections:>2} conn", run)
                    pair.append(run)
                into.append((pair[0], pair[1]))
    finally:
        for server in servers.values():
            server.stop()
    return KindResult(kind, ref, single, loaded)


def summarize(r: KindResult) -> list[bool]:
    """Print a kind's medians over rounds against the goals; whether each goal was met.

    Medians, not means: on a shared 2-core machine one round in a few is disturbed (another
    process, a slow start), and one disturbed round should not decide a goal either way."""

    def median(runs: list[tuple[RunResult, RunResult]], f: Any, side: int) -> float:
        return float(np.median([f(pair[side]) for pair in runs]))

    p50 = [median(r.single, lambda x: x.pct(50), i) for i in (0, 1)]
    p99 = [median(r.single, lambda x: x.pct(99), i) for i in (0, 1)]
    cpu1 = [median(r.single, lambda x: x.cpu_ms_per_request, i) for i in (0, 1)]
    cpu50 = [median(r.loaded, lambda x: x.cpu_ms_per_request, i) for i in (0, 1)]
    tp = [median(r.loaded, lambda x: x.throughput, i) for i in (0, 1)]
    p99_50 = [median(r.loaded, lambda x: x.pct(99), i) for i in (0, 1)]
    errors = sum(a.errors + b.errors for a, b in r.single + r.loaded)
    overhead, ratio, cpu_ratio = p50[0] - p50[1], tp[0] / tp[1], cpu50[0] / cpu50[1]
    print(
        f"{r.kind} ({r.ref})\n"
        f"  1 conn: p50 {p50[0]:.2f} vs {p50[1]:.2f} ms: overhead {overhead:+.2f} ms "
        f"(goal <= {P50_OVERHEAD_TARGET_MS:g})  {verdict(overhead <= P50_OVERHEAD_TARGET_MS)}; "
        f"p99 {p99[0]:.2f} vs {p99[1]:.2f} ms; server CPU {cpu1[0]:.2f} vs {cpu1[1]:.2f} ms/req\n"
        f"  {CONNECTIONS} conn: throughput {tp[0]:.1f} vs {tp[1]:.1f} req/s: ratio {ratio:.3f} "
        f"(goal >= {THROUGHPUT_RATIO_TARGET})  {verdict(ratio >= THROUGHPUT_RATIO_TARGET)}; "
        f"p99 {p99_50[0]:.2f} vs {p99_50[1]:.2f} ms\n"
        f"  server CPU per request at {CONNECTIONS} conn {cpu50[0]:.2f} vs {cpu50[1]:.2f} ms: "
        f"{cpu_ratio:.2f}x (goal <= {CPU_RATIO_TARGET})  {verdict(cpu_ratio <= CPU_RATIO_TARGET)}"
        f"\n  errors (any non-200): {errors}  {verdict(errors == 0)}"
    )
    return [
        overhead <= P50_OVERHEAD_TARGET_MS,
        ratio >= THROUGHPUT_RATIO_TARGET,
        cpu_ratio <= CPU_RATIO_TARGET,
        errors == 0,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", choices=("guarded", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--kinds", default="sklearn,onnx,torch", help="comma list of kinds")
    parser.add_argument("--duration", type=float, default=20.0, help="measured s, 50 conn")
    parser.add_argument("--single", type=float, default=10.0, help="measured s, 1 conn")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up s per run")
    parser.add_argument("--rounds", type=int, default=3, help="guarded/plain pairs per load")
    parser.add_argument("--no-detectors", action="store_true", help="skip the detector table")
    parser.add_argument("--store", type=Path, help="keep the store here; reused when it exists")
    parser.add_argument(
        "--redis", action="store_true", help="guarded server keeps its guard state in Redis"
    )
    args = parser.parse_args()
    if args.serve:
        serve_main(args.serve, args.port)
        return
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(REFS))
    if unknown:
        parser.error(f"--kinds: unknown {unknown}; expected some of {sorted(REFS)}")

    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mlwarden-bench-serve-") as tmp:
        store_root = args.store or Path(tmp) / "store"
        t0 = time.perf_counter()
        if not (store_root / "lineage.db").exists():
            print(f"training {SPEC.relative_to(ROOT)} (gradient boosting) ...", flush=True)
            train(store_root)
            import_kinds(store_root, list(REFS))
        keys = make_keys(store_root)
        print(
            f"store ready ({', '.join(REFS[k] for k in kinds)}) in {time.perf_counter() - t0:.0f} s"
        )
        print(
            f"uvicorn, 1 worker per server; one row per request; {args.warmup:g} s warm-up, then "
            f"{args.single:g} s at 1 connection and {args.duration:g} s at {CONNECTIONS}; the "
            "idle server is SIGSTOPped.\nNOTE: the load generator (httpx, one process) shares "
            f"this machine's {os.cpu_count()} CPU cores with the server under test; absolute "
            "numbers are bounded by that, and the client's CPU share is shown per run.",
            flush=True,
        )
        redis = start_redis() if args.redis else None
        try:
            results = [bench_kind(kind, store_root, keys, args) for kind in kinds]
        finally:
            if redis is not None:
                redis.terminate()
                redis.wait(timeout=10)
        detectors = None
        if "sklearn" in kinds and not args.no_detectors:
            detectors = detector_comparison(store_root)

    print(
        f"\n=== summary (guarded vs plain, medians over {args.rounds} round(s); total "
        f"{time.perf_counter() - began:.0f} s) ==="
    )
    for result in results:
        summarize(result)
    if detectors is not None:
        for label in ("PRADA alone", "server suite"):
            fpr, delays = detectors[label]
            shown = ", ".join(f"{k} {d if d else 'never'}" for k, d in delays.items())
            print(f"{label}: FPR {fpr:.2f}; delay {shown}")


if __name__ == "__main__":
    main()
