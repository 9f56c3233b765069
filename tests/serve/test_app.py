"""The guarded server end to end, through FastAPI's test client on a real registered model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from mlwarden import datasets
from mlwarden.errors import QueryBudgetExceeded, SignatureError
from mlwarden.lineage import LineageStore
from mlwarden.models._adapter import MeteredModel
from mlwarden.pipeline import LocalExecutor, parse_spec
from mlwarden.serve import Deployment, Guarded, build_server, close_server, create_app

SPEC = """\
name: phish
data: {dataset: phishing, label: Result, positive: phishing}
split: {test_size: 0.3, seed: 1}
train:
  estimator: logistic_regression
  params: {max_iter: 1000, C: REPLACE_C}
  cv: 2
  n_jobs: 1
checks:
  - {check: performance_floor, metric: roc_auc, min: 0.8}
register: {name: phish}
"""


class FakeClock:
    """Monotonic time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with phish@1 and phish@2 (two regularisation strengths) registered."""
    root = tmp_path_factory.mktemp("serve") / "store"
    store = LineageStore(root)
    for c in ("1.0", "0.01"):
        result = LocalExecutor(store).run(parse_spec(SPEC.replace("REPLACE_C", c)))
        assert result.status == "completed", result.error
    store.close()
    return root


@pytest.fixture(scope="module")
def phishing_rows() -> pd.DataFrame:
    d = datasets.load("phishing")
    return d.X.sample(n=600, random_state=3).reset_index(drop=True)


class Server:
    """A running app with its guards, and keys of each role."""

    def __init__(self, root: Path, deployment: Deployment, tmp: Path) -> None:
        self.store = LineageStore(root)
        self.clock = FakeClock()
        self.g: Guarded = build_server(
            self.store, deployment, serve_db=tmp / "serve.db", clock=self.clock
        )
        self.client = TestClient(create_app(self.g))
        self.keys = {
            role: self.g.keys.create(role, f"{role}-key")
            for role in ("predict", "feedback", "admin")
        }

    def predict(
        self, rows: list[dict[str, Any]], key: str | None = None, role: str = "predict"
    ) -> Any:
        token = key or self.keys[role]
        return self.client.post(
            "/v1/predict", json={"rows": rows}, headers={"Authorization": f"Bearer {token}"}
        )

    def close(self) -> None:
        close_server(self.g)
        self.store.close()


@pytest.fixture
def serve(store_root: Path, tmp_path: Path) -> Iterator[Any]:
    """Start a server for a deployment given as keyword settings; closed after the test."""
    servers: list[Server] = []

    def start(**settings: Any) -> Server:
        settings.setdefault("routes", [{"model": "phish@1"}])
        server = Server(store_root, Deployment.model_validate(settings), tmp_path)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def rows(frame: pd.DataFrame, n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {k: int(v) for k, v in r.items()} for r in frame.iloc[start : start + n].to_dict("records")
    ]


# -- probes, auth and roles -------------------------------------------------------------------


def test_probes_need_no_key_and_everything_else_does(serve: Any) -> None:
    s = serve()
    assert s.client.get("/healthz").json() == {"status": "ok"}
    ready = s.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["models"] == ["phish@1"]
    assert s.client.post("/v1/predict", json={"rows": []}).status_code == 401
    assert s.client.get("/metrics").status_code == 401
    bad = s.predict([{}], key="mlw_nope_nope")
    assert bad.status_code == 401 and "invalid" in bad.json()["detail"]


def test_roles_are_enforced(serve: Any, phishing_rows: pd.DataFrame) -> None:
    s = serve()
    assert s.predict(rows(phishing_rows, 1), role="feedback").status_code == 403
    assert s.predict(rows(phishing_rows, 1), role="admin").status_code == 200  # admin: all
    metrics = s.client.get("/metrics", headers={"Authorization": f"Bearer {s.keys['predict']}"})
    assert metrics.status_code == 403 and "needs 'admin'" in metrics.json()["detail"]


def test_a_revoked_key_is_refused(serve: Any, phishing_rows: pd.DataFrame) -> None:
    s = serve()
    key = s.g.keys.create("predict", "temp")
    assert s.predict(rows(phishing_rows, 1), key=key).status_code == 200
    s.g.keys.revoke(key.split("_")[1])
    assert s.predict(rows(phishing_rows, 1), key=key).status_code == 401


# -- predictions, schema and hardening --------------------------------------------------------


def test_predict_answers_rows_and_names_the_model(serve: Any, phishing_rows: pd.DataFrame) -> None:
    s = serve()
    answer = s.predict(rows(phishing_rows, 5))
    assert answer.status_code == 200
    body = answer.json()
    assert body["model"] == "phish@1" == answer.headers["X-Mlwarden-Model"]
    assert answer.headers["X-Request-Id"] == body["request_id"]
    assert len(body["predictions"]) == 5
    first = body["predictions"][0]
    assert set(first["probabilities"]) == {"legitimate", "phishing"}
    assert first["label"] == max(first["probabilities"], key=first["probabilities"].get)
    assert "X-Mlwarden-Fail-Open" not in answer.headers


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        ({"SSLfinal_State": 7}, "SSLfinal_State", "-1, 0 or 1"),
        ({"SSLfinal_State": "yes"}, "SSLfinal_State", "-1, 0 or 1"),
        ({"not_a_column": 1}, "not_a_column", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_field_is_a_422_naming_it(
    serve: Any, phishing_rows: pd.DataFrame, change: dict[str, Any], field: str, expected: str
) -> None:
    s = serve()
    row = {**rows(phishing_rows, 1)[0], **change}
    answer = s.predict([row])
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["loc"][-1] == field and expected in error["msg"]


def test_a_missing_field_is_a_422(serve: Any, phishing_rows: pd.DataFrame) -> None:
    s = serve()
    row = rows(phishing_rows, 1)[0]
    del row["URLURL_Length"]
    answer = s.predict([row])
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][-1] == "URLURL_Length"


@pytest.mark.parametrize(
    ("mode", "keys"),
    [
        ("probabilities", {"label", "probabilities"}),
        ("rounded", {"label", "probabilities"}),
        ("top1", {"label", "confidence"}),
        ("label", {"label"}),
    ],
)
def test_each_output_mode_returns_what_it_promises(
    serve: Any, phishing_rows: pd.DataFrame, mode: str, keys: set[str]
) -> None:
    s = serve(output={"mode": mode, "decimals": 1})
    plain = serve()
    hardened = s.predict(rows(phishing_rows, 20)).json()["predictions"]
    full = plain.predict(rows(phishing_rows, 20)).json()["predictions"]
    for got, reference in zip(hardened, full, strict=True):
        shown = {k for k, v in got.items() if v is not None}
        assert shown == keys
        assert got["label"] == reference["label"]
        if mode == "rounded":
            assert all(round(p, 1) == p for p in got["probabilities"].values())
        if mode == "top1":
            assert got["confidence"] == round(max(reference["probabilities"].values()), 1)


# -- rate limits ------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(serve: Any, phishing_rows: pd.DataFrame) -> None:
    s = serve(rate_limit={"rate_per_s": 0.5, "burst": 3}, guards={"extraction": {"enabled": False}})
    assert s.predict(rows(phishing_rows, 3)).status_code == 200
    refused = s.predict(rows(phishing_rows, 1))
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "2"
    other = s.predict(rows(phishing_rows, 1), role="admin")
    assert other.status_code == 200  # buckets are per key
    s.clock.now += 2.0
    assert s.predict(rows(phishing_rows, 1)).status_code == 200


# -- fail open, fail closed -------------------------------------------------------------------


class Broken:
    def observe_answer(self, client: str, x: Any, proba: Any) -> Any:
        raise RuntimeError("detector crashed")


def test_a_failing_guard_fails_closed_by_default(serve: Any, phishing_rows: pd.DataFrame) -> None:
    s = serve()
    s.g.detectors = Broken()  # type: ignore[assignment]
    answer = s.predict(rows(phishing_rows, 2))
    assert answer.status_code == 503 and "fails closed" in answer.json()["detail"]
    assert (
        'mlwarden_guard_errors_total{guard="extraction",outcome="closed"} 1.0'
        in s.client.get("/metrics", headers={"Authorization": f"Bearer {s.keys['admin']}"}).text
    )


def test_a_failing_guard_set_to_open_answers_and_says_so(
    serve: Any, phishing_rows: pd.DataFrame
) -> None:
    s = serve(guards={"extraction": {"on_error": "open"}})
    s.g.detectors = Broken()  # type: ignore[assignment]
    answer = s.predict(rows(phishing_rows, 2))
    assert answer.status_code == 200
    assert answer.headers["X-Mlwarden-Fail-Open"] == "extraction"


def test_a_failing_model_answers_the_fallback_only_when_open(
    serve: Any, phishing_rows: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = serve()
    opened = serve(guards={"model": {"on_error": "open", "fallback_label": "phishing"}})
    for s in (closed, opened):
        monkeypatch.setattr(s.g.routes[0].adapter, "predict_proba", Broken().observe_answer)
    assert closed.predict(rows(phishing_rows, 1)).status_code == 503
    answer = opened.predict(rows(phishing_rows, 2))
    assert answer.status_code == 200 and answer.headers["X-Mlwarden-Fail-Open"] == "model"
    assert [p["label"] for p in answer.json()["predictions"]] == ["phishing", "phishing"]


# -- A/B, shadow, decisions and feedback ------------------------------------------------------


def test_ab_split_follows_weights_and_sticks_to_a_client(
    serve: Any, phishing_rows: pd.DataFrame
) -> None:
    s = serve(routes=[{"model": "phish@1", "weight": 3}, {"model": "phish@2", "weight": 1}])
    keys = [s.g.keys.create("predict", f"client-{i}") for i in range(40)]
    served = [s.predict(rows(phishing_rows, 1), key=k).json()["model"] for k in keys]
    share = served.count("phish@1") / len(served)
    assert 0.55 <= share <= 0.95 and "phish@2" in served
    again = [s.predict(rows(phishing_rows, 1, 5), key=k).json()["model"] for k in keys]
    assert again == served  # sticky


def test_shadow_answers_are_logged_not_returned_and_feedback_attaches(
    serve: Any, phishing_rows: pd.DataFrame
) -> None:
    s = serve(shadow="phish@2")
    answer = s.predict(rows(phishing_rows, 3)).json()
    assert answer["model"] == "phish@1"
    request_id = answer["request_id"]
    admin = {"Authorization": f"Bearer {s.keys['admin']}"}
    record = s.client.get(f"/v1/decisions/{request_id}", headers=admin).json()
    assert record["model_ref"] == "phish@1" and record["input"] == rows(phishing_rows, 3)
    (shadow,) = record["shadow"]
    assert shadow["model_ref"] == "phish@2" and len(shadow["output"]["labels"]) == 3
    feedback = {"Authorization": f"Bearer {s.keys['feedback']}"}
    labels = ["phishing", "legitimate", "phishing"]
    stored = s.client.post(
        "/v1/feedback", json={"request_id": request_id, "labels": labels}, headers=feedback
    )
    assert stored.status_code == 200 and stored.json()["stored"] == 3
    record = s.client.get(f"/v1/decisions/{request_id}", headers=admin).json()
    assert record["feedback"][0]["labels"] == labels
    unknown = s.client.post(
        "/v1/feedback", json={"request_id": "0" * 32, "labels": ["x"]}, headers=feedback
    )
    assert unknown.status_code == 404
    wrong_role = {"Authorization": f"Bearer {s.keys['predict']}"}
    body = {"request_id": request_id, "labels": ["x"]}
    assert s.client.post("/v1/feedback", json=body, headers=wrong_role).status_code == 403


def test_verification_failure_stops_the_server(store_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tampered"
    import shutil

    shutil.copytree(store_root, copy)
    store = LineageStore(copy)
    version = store.records("model_version", subject="phish")[0]
    model = store.artifacts.path(version.payload["manifest"]["model_sha256"])
    model.chmod(0o644)
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match="phish@1"):
        build_server(store, Deployment.single("phish@1"), serve_db=tmp_path / "s.db")
    store.close()


# -- monitoring -------------------------------------------------------------------------------


def test_drift_alarm_on_shifted_traffic_and_quiet_on_normal(
    serve: Any, phishing_rows: pd.DataFrame
) -> None:
    settings = {
        "guards": {"drift": {"window": 100, "every": 100}, "extraction": {"enabled": False}}
    }
    normal, shifted = serve(**settings), serve(**settings)
    normal.predict(rows(phishing_rows, 100))
    skewed = [{**r, "SSLfinal_State": -1, "URL_of_Anchor": -1} for r in rows(phishing_rows, 100)]
    shifted.predict(skewed)
    assert not normal.g.monitor.wait().input_drifted  # type: ignore[union-attr]
    state = shifted.g.monitor.wait()  # type: ignore[union-attr]
    assert state.input_drifted and "SSLfinal_State" in state.drifted_columns
    admin = {"Authorization": f"Bearer {shifted.keys['admin']}"}
    text = shifted.client.get("/metrics", headers=admin).text
    assert 'mlwarden_drift_alarms_total{kind="input"} 1.0' in text
    assert 'mlwarden_requests_total{endpoint="/v1/predict",status="2xx"} 1.0' in text
    assert "client=" not in text  # no per-client labels


# -- extraction detection over HTTP -----------------------------------------------------------


class HttpModel(MeteredModel):
    """The thief's view: the server's API as a model adapter (probabilities)."""

    def __init__(self, server: Server, key: str) -> None:
        super().__init__()
        self.server, self.key = server, key
        self.refused_at: int | None = None

    @property
    def classes_(self) -> np.ndarray:
        return np.array(["legitimate", "phishing"])

    def predict_proba(self, X: Any) -> np.ndarray:
        payload = [{k: int(v) for k, v in r.items()} for r in pd.DataFrame(X).to_dict("records")]
        answer = self.server.predict(payload, key=self.key)
        if answer.status_code == 403:
            self.refused_at = self.queries
            raise QueryBudgetExceeded(answer.json()["detail"])
        assert answer.status_code == 200, answer.text
        self._spend(len(payload))
        return np.array(
            [[p["probabilities"][c] for c in self.classes_] for p in answer.json()["predictions"]]
        )


def test_a_real_extraction_attack_is_blocked_and_benign_clients_are_not(
    serve: Any, phishing_rows: pd.DataFrame
) -> None:
    from mlwarden.attacks import extract_distillation

    s = serve(rate_limit={"rate_per_s": 1e6, "burst": 10**6})
    for i in range(4):  # benign clients: held-out rows, 150 each
        key = s.g.keys.create("predict", f"analyst-{i}")
        for start in range(0, 150, 10):
            assert s.predict(rows(phishing_rows, 10, i * 150 + start), key=key).status_code == 200
    thief = HttpModel(s, s.g.keys.create("predict", "thief"))
    reference = datasets.load("phishing")
    result = extract_distillation(
        thief,
        reference.X.iloc[:200],
        schema=reference.schema,
        source="uniform",
        budgets=(100, 500, 2000),
        batch_size=20,
        seed=0,
    )
    assert thief.refused_at is not None and thief.refused_at <= 500, thief.refused_at
    assert result.stopped_early
    assert not s.g.blocked - {s.g.keys.authenticate(thief.key).key_id}  # type: ignore[union-attr]
