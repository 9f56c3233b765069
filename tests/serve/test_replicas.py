"""Replicas sharing guard state in a real Redis: one budget, one window and one block list for
every replica, revocations seen everywhere within a second, and Redis outages handled as the
deployment's ``state.on_error`` says. Skipped when ``redis-server`` is not installed
(``scripts/redis-for-tests.sh`` installs it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlwarden.errors import GuardError, SpecError, StoreError
from mlwarden.serve import SERVE_DB, Deployment, KeyStore, SharedState
from mlwarden.serve._decisions import DecisionLog
from mlwarden.serve._metrics import ServerMetrics
from mlwarden.serve._ratelimit import TokenBucketLimiter
from mlwarden.serve._redis_state import RedisState
from mlwarden.serve._state import LocalState
from tests._polling import free_port, seconds_until, wait_until
from tests.serve.test_app import rows

pytest.importorskip("redis")
REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server is not installed (bash scripts/redis-for-tests.sh)"
)
SRC = Path(__file__).resolve().parents[2] / "src"


class RedisServer:
    """A throwaway redis-server on a free port, without persistence."""

    def __init__(self) -> None:
        import redis

        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
        self.process = subprocess.Popen(
            [str(REDIS_SERVER), *args, "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(up, 10, "redis-server starting")
        client.close()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = RedisServer()
    yield server.url
    server.stop()


def shared(url: str, namespace: str, on_error: str = "closed") -> RedisState:
    """One replica's view of the shared state (its own client and connection)."""
    return RedisState(SharedState(url=url, on_error=on_error), namespace, ServerMetrics())


def errors(state: RedisState, outcome: str) -> float:
    counter = state.metrics.guard_errors.labels(guard="state", outcome=outcome)
    return float(counter._value.get())


def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """What every Redis connection sends from now on: one entry per round trip."""
    import redis.connection

    sent: list[bytes] = []
    send = redis.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(command)
        send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    return sent


# -- the state itself -------------------------------------------------------------------------


def test_two_replicas_spend_one_bucket_and_without_redis_each_has_its_own(redis_url: str) -> None:
    a, b = (shared(redis_url, "bucket").limiter("rate", 0.001, 10, time.monotonic) for _ in "ab")
    granted = [(a if i % 2 else b).acquire("thief").allowed for i in range(12)]
    assert granted == [True] * 10 + [False] * 2
    refused = b.acquire("thief")
    assert not refused.allowed and refused.retry_after_s > 100  # one token at 0.001/s
    assert a.acquire("someone-else").allowed
    local_a, local_b = (LocalState().limiter("rate", 0.001, 10, time.monotonic) for _ in "ab")
    own = [(local_a if i % 2 else local_b).acquire("thief").allowed for i in range(20)]
    assert own == [True] * 20  # today's behaviour without state: two budgets


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    spends=st.lists(st.tuples(st.booleans(), st.integers(1, 4)), min_size=1, max_size=30),
    burst=st.integers(4, 20),
)
def test_replicas_sharing_redis_decide_as_one_limiter(
    redis_url: str, spends: list[tuple[bool, int]], burst: int
) -> None:
    namespace = f"property-{uuid.uuid4().hex}"
    a, b = (shared(redis_url, namespace).limiter("rate", 1e-6, burst, time.monotonic) for _ in "ab")
    one = TokenBucketLimiter(1e-6, burst, clock=lambda: 0.0)
    for on_a, cost in spends:
        got, want = (a if on_a else b).acquire("c", cost), one.acquire("c", cost)
        assert (got.allowed, got.remaining) == (want.allowed, want.remaining)


def test_replicas_spending_at_once_never_exceed_the_burst(redis_url: str) -> None:
    limiters = [shared(redis_url, "race").limiter("rate", 0.001, 50, time.monotonic) for _ in "ab"]
    granted: list[bool] = []
    lock = threading.Lock()

    def spend(limiter: Any) -> None:
        for _ in range(25):
            allowed = limiter.acquire("thief", cost=1).allowed
            with lock:
                granted.append(allowed)

    threads = [threading.Thread(target=spend, args=(limiters[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(granted) == 200 and sum(granted) == 50


def test_windows_and_blocks_are_shared(redis_url: str) -> None:
    a, b = shared(redis_url, "windows"), shared(redis_url, "windows")
    wa, wb = a.flags("boundary", 4, 10), b.flags("boundary", 4, 10)
    assert wa.push("c", True) == (1, 1)
    assert wb.push("c", False) == (2, 1)
    for _ in range(3):
        wa.push("c", True)
    assert wb.push("c", True) == (4, 4)  # the window keeps the last 4 flags of both replicas
    assert wb.size("c") == 4 and len(wa) == 1
    wa.drop("c")
    assert wb.size("c") == 0 and wb.push("c", False) == (1, 0)
    blocked_a, blocked_b = a.restrictions("blocked"), b.restrictions("blocked")
    blocked_a.add("thief")
    assert "thief" in blocked_b and set(blocked_b) == {"thief"} and len(blocked_b) == 1
    blocked_b.discard("thief")
    assert "thief" not in blocked_a


def test_blocked_and_throttled_are_asked_in_one_round_trip(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlwarden.serve._admission import _member
    from mlwarden.serve._state_calls import settle

    state = shared(redis_url, "admission")
    blocked, throttled = state.restrictions("blocked"), state.restrictions("throttled")
    shared(redis_url, "admission").restrictions("throttled").add("slow")  # another replica
    state.redis.ping()
    sent = round_trips(monkeypatch)
    for client, expected in (("slow", [False, True]), ("other", [False, False])):
        before = len(sent)
        assert settle([_member(blocked, client), _member(throttled, client)]) == expected
        assert len(sent) - before == 1
    down = shared(f"redis://127.0.0.1:{free_port()}/0", "admission", "open")
    local_blocked = down.restrictions("blocked")
    local_blocked.add("thief")  # kept by this replica while Redis is down
    assert settle([_member(local_blocked, "thief"), _member(down.restrictions("t"), "x")]) == [
        True,
        False,
    ]
    assert errors(down, "open") == 2  # the add, then the one batch of two


def test_an_allowance_over_a_window_is_shared(redis_url: str) -> None:
    a, b = (
        shared(redis_url, "allowance").allowance("explain", 5, 60.0, time.monotonic) for _ in "ab"
    )
    assert a.left("thief") == 5 and a.retry_s("thief") == 0.0
    a.spend("thief", 2)
    b.spend("thief", 2)
    assert a.left("thief") == b.left("thief") == 1
    assert 59.0 < b.retry_s("thief") <= 60.0
    short = shared(redis_url, "allowance").allowance("brief", 1, 0.2, time.monotonic)
    short.spend("thief", 1)
    assert short.left("thief") == 0
    wait_until(lambda: short.left("thief") == 1, 2.0, "the window sliding past the event")


def test_slowdown_windows_are_shared(redis_url: str) -> None:
    from mlwarden.serve._slowdown import ExitMonitor

    clean = np.r_[np.full(170, 0.2), np.full(30, 1.0)]  # 15% of clean answers run to the end

    def monitor() -> ExitMonitor:  # the window test alone
        return ExitMonitor(cusum_h=1e9, n_exits=3).fit(clean)

    def first_alarm(monitors: list[ExitMonitor]) -> int:
        for i in range(1, 200):
            if monitors[i % len(monitors)].observe("sloth", 2, 1.0).alarm:
                return i
        raise AssertionError("no alarm")

    alone = first_alarm([monitor()])
    pair = [monitor(), monitor()]
    for replica in pair:
        replica.share(shared(redis_url, "slowdown"))
    assert first_alarm(pair) == alone
    assert first_alarm([monitor(), monitor()]) > alone  # unshared: each sees half


def test_the_slowdown_cusum_is_shared(redis_url: str) -> None:
    from mlwarden.serve._slowdown import ExitMonitor

    clean = np.r_[np.full(170, 0.2), np.full(30, 1.0)]

    def first_cusum_alarm(monitors: list[ExitMonitor]) -> int:
        for i in range(1, 200):
            verdict = monitors[i % len(monitors)].observe("sloth", 2, 1.0)
            if any(p.alarm for p in verdict.parts if p.detector.endswith("-cusum")):
                return i
        raise AssertionError("no alarm")

    alone = first_cusum_alarm([ExitMonitor(n_exits=3).fit(clean)])
    pair = [ExitMonitor(n_exits=3).fit(clean) for _ in "ab"]
    for replica in pair:
        replica.share(shared(redis_url, "cusum"))
    assert first_cusum_alarm(pair) == alone
    unshared = [ExitMonitor(n_exits=3).fit(clean) for _ in "ab"]
    assert first_cusum_alarm(unshared) > alone  # each replica sums half the answers


def test_coverage_is_counted_once_across_replicas(redis_url: str) -> None:
    from sklearn.tree import DecisionTreeClassifier

    from mlwarden.serve._extraction import BenignTraffic, CoverageDetector

    class Space:  # one column, cut into ten leaves by the tree
        n_features = 1

    x = np.arange(10.0).repeat(10).reshape(-1, 1)
    tree = DecisionTreeClassifier(random_state=0).fit(x, np.arange(10).repeat(10))
    benign = BenignTraffic(Space(), x, x, np.full((len(x), 2), 0.5))  # type: ignore[arg-type]

    def detector() -> CoverageDetector:
        return CoverageDetector(tree, benign_queries=20, n_simulations=20, min_queries=1).fit(
            benign
        )

    one, pair, unshared = detector(), [detector(), detector()], [detector(), detector()]
    for replica in pair:
        replica.share(shared(redis_url, "coverage"))
    for i, value in enumerate(np.arange(10.0)):  # a thief visiting every leaf once
        got = pair[i % 2].observe_answer("thief", [value])
        want = one.observe_answer("thief", [value])
        assert (got.n, got.statistic) == (want.n, pytest.approx(want.statistic))
        unshared[i % 2].observe_answer("thief", [value])
    assert pair[1].coverage("thief") == one.coverage("thief") == 1.0
    assert max(r.coverage("thief") for r in unshared) == 0.5  # each replica saw half


def test_prada_replicas_replay_one_query_log_and_alarm_as_one(redis_url: str) -> None:
    from mlwarden.serve._extraction import PradaDetector, detection_delay

    rng = np.random.default_rng(2)
    seeds = rng.normal(size=(10, 20))  # Jacobian-augmentation style: small steps around seeds
    steps = seeds[rng.integers(0, 10, 290)] + rng.normal(0.0, 0.02, (290, 20))
    stream = np.vstack([seeds, steps]).astype(np.float32)  # the log carries float32 rows
    answers = [[0.6, 0.4] if i % 3 else [0.3, 0.7] for i in range(len(stream))]

    def first_alarm(replicas: list[PradaDetector]) -> int:
        for i, (x, proba) in enumerate(zip(stream, answers, strict=True), start=1):
            if replicas[i % len(replicas)].observe_answer("thief", x, proba).alarm:
                return i
        raise AssertionError("no alarm")

    alone = detection_delay(PradaDetector(), zip(stream, answers, strict=True))
    assert alone is not None and first_alarm([PradaDetector()]) == alone
    pair = [PradaDetector(), PradaDetector()]
    for replica in pair:
        replica.share(shared(redis_url, "prada"))
    assert first_alarm(pair) == alone
    one = PradaDetector()  # the replica that answered last holds one detector's state
    for x, proba in zip(stream[:alone], answers[:alone], strict=True):
        one.observe_answer("thief", x, proba)
    last = pair[alone % 2]
    assert last.statistic("thief") == pytest.approx(one.statistic("thief"))
    assert last.state_size("thief") == one.state_size("thief") > 0
    a = pair[0]
    a.reset("thief")  # forgetting a client forgets its log: a fresh replica replays nothing
    late = PradaDetector()
    late.share(shared(redis_url, "prada"))
    late.observe_answer("thief", stream[0], answers[0])
    assert late.state_size("thief") == 1
    unshared = first_alarm([PradaDetector(), PradaDetector()])
    assert unshared > alone  # each replica sees half the queries


@pytest.fixture(scope="module")
def suite_traffic() -> tuple[Any, np.ndarray, np.ndarray]:
    """Benign phishing traffic, and 90 query rows (as the shared log holds them: float32) with
    a logistic regression's answers."""
    from sklearn.linear_model import LogisticRegression

    from mlwarden import datasets
    from mlwarden.serve._extraction import BenignTraffic, FeatureSpace

    data = datasets.load("phishing")
    X, y = data.X.iloc[:3000], data.y.iloc[:3000]
    model = LogisticRegression(max_iter=1000).fit(X, y)
    space = FeatureSpace.fit(X, data.schema)
    encoded = space.transform(X)
    traffic = BenignTraffic(space, encoded, encoded, model.predict_proba(X))
    queries = X.sample(n=90, replace=True, random_state=1)
    vectors = space.transform(queries).astype(np.float32).astype(np.float64)
    return traffic, vectors, model.predict_proba(queries)


def default_suite(traffic: Any) -> Any:
    from mlwarden.serve._extraction import (
        BoundaryDetector,
        DetectorSuite,
        OffManifoldDetector,
        PradaDetector,
        RarityDetector,
    )

    detectors = [PradaDetector(), BoundaryDetector(), OffManifoldDetector(), RarityDetector()]
    return DetectorSuite(detectors).fit(traffic)


def judged(verdict: Any) -> list[tuple[str, bool, int, float | None]]:
    return [
        (p.detector, p.alarm, p.n, None if p.statistic is None else round(p.statistic, 9))
        for p in verdict.parts
    ]


def test_a_suite_on_redis_judges_as_in_process_in_one_round_trip_per_query(
    redis_url: str,
    suite_traffic: tuple[Any, np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    traffic, vectors, proba = suite_traffic
    state = shared(redis_url, "suite")
    local, remote = default_suite(traffic), default_suite(traffic)
    remote.share(state)
    state.redis.ping()  # the connection and its handshake, before counting
    sent = round_trips(monkeypatch)
    for i, (x, p) in enumerate(zip(vectors, proba, strict=True)):
        client = f"client-{i % 3}"
        before = len(sent)
        got = remote.observe_answer(client, x, p)
        assert len(sent) - before == 1  # PRADA's log and three windows: one round trip
        assert judged(got) == judged(local.observe_answer(client, x, p))


def test_a_suite_whose_redis_fails_counts_one_failure_per_query(
    suite_traffic: tuple[Any, np.ndarray, np.ndarray],
) -> None:
    traffic, vectors, proba = suite_traffic
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    opened, local, fallback = shared(down, "suite", "open"), *(default_suite(traffic) for _ in "ab")
    fallback.share(opened)
    for x, p in zip(vectors[:20], proba[:20], strict=True):  # served on this replica's state
        assert judged(fallback.observe_answer("c", x, p)) == judged(local.observe_answer("c", x, p))
    assert errors(opened, "open") == 20
    closed, refusing = shared(down, "suite", "closed"), default_suite(traffic)
    refusing.share(closed)
    with pytest.raises(GuardError) as refused:
        refusing.observe_answer("c", vectors[0], proba[0])
    assert refused.value.guard == "state" and errors(closed, "closed") == 1


def test_a_revocation_reaches_the_other_replica_within_a_second(
    redis_url: str, tmp_path: Path
) -> None:
    db = tmp_path / "serve.db"
    a = KeyStore(db, cache_ttl_s=60, revocations=shared(redis_url, "keys").revocation_feed())
    b = KeyStore(db, cache_ttl_s=60, revocations=shared(redis_url, "keys").revocation_feed())
    key = a.create("predict", "soon revoked")
    assert a.authenticate(key) is not None and b.authenticate(key) is not None  # b caches it
    a.revoke(key.split("_")[1])
    assert a.authenticate(key) is None
    took = seconds_until(lambda: b.authenticate(key) is None, 1.0, "the revocation reaching b")
    assert took <= 1.0
    a.close()
    b.close()


# -- configuration and outages ----------------------------------------------------------------


def test_state_is_a_redis_url_or_a_url_with_a_policy() -> None:
    bare = Deployment.single("m@1", state="redis://cache:6379/2")
    assert bare.state is not None and bare.state.url == "redis://cache:6379/2"
    assert bare.state.on_error == "closed"
    full = Deployment.single("m@1", state={"url": "redis://cache:6379/0", "on_error": "open"})
    assert full.state is not None and full.state.on_error == "open"
    assert Deployment.single("m@1").state is None
    with pytest.raises(SpecError, match=r"state\.url: expected a Redis URL"):
        Deployment.single("m@1", state="http://cache:6379")


def test_a_redis_outage_refuses_when_closed_and_falls_back_when_open() -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    closed = shared(down, "outage", "closed")
    with pytest.raises(StoreError, match="cannot reach the shared state"):
        closed.check()
    with pytest.raises(GuardError) as refused:
        closed.limiter("rate", 1.0, 3, time.monotonic).acquire("c")
    assert refused.value.guard == "state" and errors(closed, "closed") == 1
    with pytest.raises(GuardError):
        _ = "c" in closed.restrictions("blocked")

    opened = shared(down, "outage", "open")
    opened.check()  # warns, serves on
    limiter = opened.limiter("rate", 0.001, 3, time.monotonic)
    assert [limiter.acquire("c").allowed for _ in range(4)] == [True, True, True, False]
    blocked = opened.restrictions("blocked")
    blocked.add("thief")  # kept locally while Redis is down
    assert "thief" in blocked
    assert opened.flags("w", 5, 10).push("c", True) == (1, 1)
    assert errors(opened, "open") >= 7


def test_the_server_follows_the_state_policy_when_redis_goes_down(
    serve: Any, phishing_rows: pd.DataFrame
) -> None:
    own = RedisServer()
    closed = serve(state={"url": own.url, "on_error": "closed"})
    opened = serve(state={"url": own.url, "on_error": "open"})
    assert closed.predict(rows(phishing_rows, 2)).status_code == 200
    own.stop()
    refused = closed.predict(rows(phishing_rows, 2))
    assert refused.status_code == 503 and "'state'" in refused.json()["detail"]
    answered = opened.predict(rows(phishing_rows, 2))
    assert answered.status_code == 200, answered.text
    assert "state" in answered.headers["X-Mlwarden-Fail-Open"].split(",")


def test_without_state_each_replica_keeps_its_own_budget(
    serve: Any, phishing_rows: pd.DataFrame
) -> None:
    a = serve(rate_limit={"rate_per_s": 0.001, "burst": 20})
    b = serve(rate_limit={"rate_per_s": 0.001, "burst": 20})  # same key store, no state:
    key = a.g.keys.create("predict", "thief")
    for replica in (a, b):  # today's behaviour, documented: a budget per replica
        assert replica.predict(rows(phishing_rows, 20), key=key).status_code == 200
        assert replica.predict(rows(phishing_rows, 1), key=key).status_code == 429


# -- two server processes ---------------------------------------------------------------------


class Answer:
    """An HTTP answer: status, JSON body, headers."""

    def __init__(self, status: int, body: bytes, headers: Any) -> None:
        self.status_code = status
        self.headers = headers
        self.text = body.decode()

    def json(self) -> Any:
        return json.loads(self.text)


def post(url: str, key: str, body: Any = None) -> Answer:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return Answer(reply.status, reply.read(), reply.headers)
    except urllib.error.HTTPError as refused:
        return Answer(refused.code, refused.read(), refused.headers)


class Replica:
    """``mlwarden serve --config`` in its own process."""

    def __init__(self, store: Path, config: Path, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (folder / f"replica-{self.port}.log").open("w")
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        command = "from mlwarden.cli import entrypoint; entrypoint()"
        args = ["serve", "--config", str(config), "--store", str(store), "--port", str(self.port)]
        self.process = subprocess.Popen(
            [sys.executable, "-c", command, *args],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"replica exited: {Path(self.log.name).read_text()}")
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def predict(self, key: str, payload: list[dict[str, int]]) -> Answer:
        return post(f"{self.url}/v1/predict", key, {"rows": payload})

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def replicas(
    store_root: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Replica, Replica]]:
    """Two server processes on one store, sharing guard state in Redis."""
    folder = tmp_path_factory.mktemp("replicas")
    config = folder / "deploy.yaml"
    config.write_text(
        "name: replicated\nroutes: [{model: phish@1}]\n"
        "rate_limit: {rate_per_s: 0.001, burst: 200}\n"
        f"state: {redis_url}\n"
    )
    # The serving database is made first: two processes creating its tables at once collide.
    DecisionLog(store_root / SERVE_DB).close()
    keystore(store_root).close()
    pair = (Replica(store_root, config, folder), Replica(store_root, config, folder))
    try:
        for replica in pair:
            wait_until(replica.ready, 120, "a replica starting")
        yield pair
    finally:
        for replica in pair:
            replica.stop()


def keystore(store: Path) -> KeyStore:
    return KeyStore(store / SERVE_DB)


def uniform_thief(n: int, columns: list[str]) -> list[list[dict[str, int]]]:
    """One-row queries drawn uniformly from {-1, 0, 1}^d: distillation from noise."""
    draws = np.random.default_rng(0).integers(-1, 2, size=(n, len(columns)))
    return [[dict(zip(columns, map(int, row), strict=True))] for row in draws]


def queries_until_refused(send: Callable[[int, list[dict[str, int]]], int], queries: Any) -> int:
    for i, query in enumerate(queries, start=1):
        status = send(i, query)
        if status != 200:
            assert status == 403, status
            return i
    raise AssertionError("the thief was never refused")


def test_a_thief_alternating_replicas_is_caught_as_fast_as_on_one_server(
    replicas: tuple[Replica, Replica], store_root: Path, serve: Any, phishing_rows: pd.DataFrame
) -> None:
    queries = uniform_thief(300, list(phishing_rows.columns))
    one = serve(rate_limit={"rate_per_s": 0.001, "burst": 200})
    alone = one.g.keys.create("predict", "thief")
    on_one = queries_until_refused(lambda _, q: one.predict(q, key=alone).status_code, queries)
    keys = keystore(store_root)
    thief = keys.create("predict", "thief")
    keys.close()
    a, b = replicas
    spread = queries_until_refused(
        lambda i, q: (a if i % 2 else b).predict(thief, q).status_code, queries
    )
    assert spread == on_one, (spread, on_one)
    for replica in replicas:  # the block holds on both
        answer = replica.predict(thief, queries[0])
        assert answer.status_code == 403 and "blocked" in answer.json()["detail"]


def test_the_rate_limit_is_one_budget_across_replicas(
    replicas: tuple[Replica, Replica], store_root: Path, phishing_rows: pd.DataFrame
) -> None:
    keys = keystore(store_root)
    client = keys.create("predict", "busy analyst")
    keys.close()
    a, b = replicas
    for i in range(4):  # 4 x 50 benign rows: the whole burst of 200
        answer = (a if i % 2 else b).predict(client, rows(phishing_rows, 50, i * 50))
        assert answer.status_code == 200, answer.text
    for replica in replicas:
        refused = replica.predict(client, rows(phishing_rows, 1, 300))
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 100


def test_a_key_revoked_through_one_replica_is_refused_by_the_other_within_a_second(
    replicas: tuple[Replica, Replica], store_root: Path, phishing_rows: pd.DataFrame
) -> None:
    keys = keystore(store_root)
    admin, doomed = keys.create("admin", "ops"), keys.create("predict", "leaked")
    keys.close()
    a, b = replicas
    assert b.predict(doomed, rows(phishing_rows, 1)).status_code == 200  # b caches the key
    key_id = doomed.split("_")[1]
    revoked = post(f"{a.url}/v1/admin/revoke/{key_id}", admin)
    assert revoked.status_code == 200 and revoked.json()["key_id"] == key_id
    took = seconds_until(
        lambda: b.predict(doomed, rows(phishing_rows, 1)).status_code == 401,
        1.0,
        "the revocation reaching the other replica",
    )
    assert took <= 1.0
    missing = post(f"{b.url}/v1/admin/revoke/{'0' * 16}", admin)
    assert missing.status_code == 404 and "no api key" in missing.json()["detail"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """This checkout's ``mlwarden`` in a fresh process."""
    command = "from mlwarden.cli import entrypoint; entrypoint()"
    env = {**os.environ, "PYTHONPATH": str(SRC), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-c", command, *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_a_key_revoked_with_the_cli_and_state_is_refused_by_every_replica_within_a_second(
    replicas: tuple[Replica, Replica],
    store_root: Path,
    redis_url: str,
    phishing_rows: pd.DataFrame,
    tmp_path: Path,
) -> None:
    keys = keystore(store_root)
    doomed = keys.create("predict", "leaked too")
    keys.close()
    for replica in replicas:  # both cache the key
        assert replica.predict(doomed, rows(phishing_rows, 1)).status_code == 200
    key_id = doomed.split("_")[1]
    store = str(store_root)
    done = cli("keys", "revoke", key_id, "--store", store, "--state", redis_url, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    for replica in replicas:
        took = seconds_until(
            lambda r=replica: r.predict(doomed, rows(phishing_rows, 1)).status_code == 401,
            1.0,
            "the revocation reaching a replica",
        )
        assert took <= 1.0
    bad = cli("keys", "revoke", key_id, "--store", store, "--state", "http://x", cwd=tmp_path)
    assert bad.returncode != 0 and "expected a Redis URL" in bad.stderr
    down = f"redis://127.0.0.1:{free_port()}/0"
    unheard = cli("keys", "revoke", key_id, "--store", store, "--state", down, cwd=tmp_path)
    assert unheard.returncode != 0 and "could not be told" in unheard.stderr
    assert "Traceback" not in bad.stderr + unheard.stderr
