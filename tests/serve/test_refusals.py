"""The server never answers 500 to a client: each refusal is a 4xx (or 503) naming the problem.

Every test runs the default deployment (``Deployment.single``-equivalent settings) unless the
behaviour under test is a setting (throttling, failing open, switching the docs off).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlwarden import datasets
from mlwarden.errors import SpecError
from mlwarden.serve import Deployment
from tests.serve.test_app import Server, rows

JSON = {"content-type": "application/json"}


def _post(s: Server, body: bytes | str, role: str = "predict", path: str = "/v1/predict") -> Any:
    headers = {**JSON, "Authorization": f"Bearer {s.keys[role]}"}
    return s.client.post(path, content=body, headers=headers)


# -- rows per request against the rate limit --------------------------------------------------


def test_more_rows_than_the_burst_is_refused_when_the_deployment_loads(tmp_path: Path) -> None:
    assert Deployment.single("m@1").max_rows == Deployment.single("m@1").rate_limit.burst == 200
    with pytest.raises(SpecError, match=r"max_rows.*1000.*burst.*200"):
        Deployment.single("m@1", guards={"schema": {"max_rows": 1000}})
    path = tmp_path / "deploy.yaml"
    path.write_text(
        "routes: [{model: m@1}]\nrate_limit: {burst: 5}\nguards:\n  schema: {max_rows: 6}\n"
    )
    with pytest.raises(SpecError, match=r"deploy.yaml:\d+: .*could never pass"):
        Deployment.from_yaml(path)


def test_default_deployment_answers_413_not_500_above_the_burst(
    serve: Any, phishing_rows: pd.DataFrame
) -> None:
    s = serve()
    too_many = s.predict(rows(phishing_rows, 201))
    assert too_many.status_code == 413, too_many.text
    assert "at most 200 rows" in too_many.json()["detail"]
    assert s.predict(rows(phishing_rows, 200, 201)).status_code == 200  # the burst itself passes


def test_a_throttled_client_gets_429_with_retry_after_for_more_rows_than_its_burst(
    serve: Any, phishing_rows: pd.DataFrame
) -> None:
    s = serve(guards={"extraction": {"action": "throttle", "throttle_rate_per_s": 0.5}})
    client = s.g.keys.authenticate(s.keys["predict"]).key_id  # type: ignore[union-attr]
    s.g.throttled.add(client)
    answer = s.predict(rows(phishing_rows, 2))
    assert answer.status_code == 429, answer.text
    assert answer.headers["Retry-After"] == "1"
    assert "one row at a time" in answer.json()["detail"]
    assert s.predict(rows(phishing_rows, 1)).status_code == 200
    refused = s.predict(rows(phishing_rows, 1, 1))  # its one token is spent: 2 s at 0.5 rows/s
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "2"
    s.clock.now += 2.0
    assert s.predict(rows(phishing_rows, 1, 1)).status_code == 200


# -- the body: capped before parsing, echoed only in excerpts ----------------------------------


def test_a_large_body_is_refused_before_it_is_read(serve: Any) -> None:
    s = serve()
    declared = _post(s, b"x" * 3_000_000)
    assert declared.status_code == 413 and "too large" in declared.json()["detail"]

    def chunks() -> Any:  # no Content-Length: read only up to the cap
        for _ in range(3_000):
            yield b"x" * 1000

    streamed = s.client.post(
        "/v1/predict",
        content=chunks(),
        headers={**JSON, "Authorization": f"Bearer {s.keys['predict']}"},
    )
    assert streamed.status_code == 413 and "at most 200 rows" in streamed.json()["detail"]


def test_a_422_echoes_only_bounded_excerpts(serve: Any, phishing_rows: pd.DataFrame) -> None:
    s = serve()
    bad = [dict.fromkeys(r, 7) for r in rows(phishing_rows, 200)]  # 200 x 23 wrong values
    bad[0] = dict.fromkeys(bad[0], "z" * 10_000)
    answer = s.predict(bad)
    assert answer.status_code == 422
    body = answer.json()
    assert body["errors"] == 200 * len(bad[0]) and len(body["detail"]) == 20
    assert len(answer.content) < 10_000, len(answer.content)
    assert all(e["input"].startswith("zzz") and len(e["input"]) <= 200 for e in body["detail"])


# -- odd JSON: always a 4xx naming the problem --------------------------------------------------


def _row(frame: pd.DataFrame, **change: Any) -> dict[str, Any]:
    return {**rows(frame, 1)[0], **change}


ODD: list[tuple[str, Any, int, str]] = [
    ("boolean", {"URLURL_Length": True}, 422, "JSON boolean true"),
    ("string number", {"URLURL_Length": "1"}, 422, "got a string"),
    ("null", {"URLURL_Length": None}, 422, "-1, 0 or 1"),
    ("NaN literal", "NaN", 422, "got nan"),
    ("Infinity literal", "-Infinity", 422, "got -inf"),
    ("huge float", "1e400", 422, "got inf"),
    ("huge integer", "1" + "0" * 5000, 400, "4300 digits"),
    ("nested object", {"URLURL_Length": {"a": [1, {"b": 2}]}}, 422, "-1, 0 or 1"),
    ("fraction", {"URLURL_Length": 0.5}, 422, "got 0.5"),
    ("unicode key", {"URLURL_Lèngth✓": 1}, 422, "Extra inputs"),
    ("lone surrogate key", '"\\ud800"', 422, "string"),
]


@pytest.mark.parametrize(("case", "change", "status", "named"), ODD, ids=[c[0] for c in ODD])
def test_odd_json_in_a_row_is_a_4xx_naming_the_problem(
    serve: Any, phishing_rows: pd.DataFrame, case: str, change: Any, status: int, named: str
) -> None:
    s = serve()
    if isinstance(change, dict):
        body = json.dumps({"rows": [_row(phishing_rows, **change)]}, ensure_ascii=False)
    elif change.startswith('"'):  # a raw key
        body = json.dumps({"rows": [_row(phishing_rows)]})[:-3] + f", {change}: 1}}]}}"
    else:  # a raw JSON literal for one value
        body = json.dumps({"rows": [_row(phishing_rows, URLURL_Length=0)]})
        body = body.replace('"URLURL_Length": 0', f'"URLURL_Length": {change}')
    answer = _post(s, body.encode("utf-8", "surrogatepass"))
    assert answer.status_code == status, answer.text
    assert named in answer.text


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        (b'{"rows": []}', 422, "at least 1 item"),
        (b'{"rows": [1, "a", null]}', 422, "valid dictionary"),
        (b'{"rows": null}', 422, "valid list"),
        (b"[]", 422, "valid dictionary"),
        (b'{"rows": [', 400, "not valid JSON"),
        (b"\xff\xfe\x00", 400, "not valid JSON"),
        (b'{"rows": [NaN], "extra": NaN}', 422, "Extra inputs"),
    ],
)
def test_an_odd_body_is_a_4xx_naming_the_problem(
    serve: Any, body: bytes, status: int, named: str
) -> None:
    s = serve()
    answer = _post(s, body)
    assert answer.status_code == status, answer.text
    assert named in answer.text


def test_a_body_that_is_not_json_is_a_4xx(serve: Any) -> None:
    s = serve()
    answer = s.client.post(
        "/v1/predict",
        content=b"\xff\xfe rows",
        headers={"content-type": "text/plain", "Authorization": f"Bearer {s.keys['predict']}"},
    )
    assert answer.status_code == 422 and "dictionary" in answer.text


def test_odd_feedback_is_a_4xx(serve: Any) -> None:
    s = serve()
    for body, named in [
        (b'{"request_id": "x", "labels": [NaN]}', "finite"),
        (b'{"request_id": "x", "labels": []}', "at least 1"),
        (b'{"request_id": "' + b"x" * 100 + b'", "labels": [1]}', "at most 64"),
    ]:
        answer = _post(s, body, role="feedback", path="/v1/feedback")
        assert answer.status_code == 422 and named in answer.text, answer.text


def test_non_finite_model_output_is_a_503_not_a_500(
    serve: Any, phishing_rows: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = serve(guards={"extraction": {"enabled": False}})
    monkeypatch.setattr(
        s.g.routes[0].adapter, "predict_proba", lambda X: np.full((len(X), 2), np.nan)
    )
    answer = s.predict(rows(phishing_rows, 2))
    assert answer.status_code == 503 and "FloatingPointError" in answer.json()["detail"]


# -- the thief who kept the answers to the batch that raised the alarm -----------------------


def _surrogate_agreement(
    X_train: pd.DataFrame, y_train: np.ndarray, held_out: pd.DataFrame, target: np.ndarray
) -> float:
    from mlwarden.attacks import TabularSurrogate

    surrogate = TabularSurrogate([], seed=0).fit(X_train, y_train, np.ones(len(y_train)))
    return float(np.mean(surrogate.predict(held_out) == target))


def test_a_batch_that_raises_the_alarm_is_not_answered(serve: Any) -> None:
    from mlwarden.attacks import uniform_noise

    s = serve()
    phishing = datasets.load("phishing")
    order = np.random.default_rng(0).permutation(len(phishing.X))
    held_out = phishing.X.iloc[order[:2000]].reset_index(drop=True)
    model = s.g.routes[0]
    target = model.classes[model.predict_proba(held_out).argmax(axis=1)]
    # The thief: 20 public rows with their true labels, then 200 uniform rows in one request.
    public = phishing.X.iloc[order[2000:2020]].reset_index(drop=True)
    public_y = np.asarray(phishing.y.iloc[order[2000:2020]]).astype(str)
    baseline = _surrogate_agreement(public, public_y, held_out, target)
    queries = uniform_noise(phishing.X, 200, phishing.schema, seed=0)
    answer = s.predict(rows(queries, 200))
    answered = [p["label"] for p in answer.json().get("predictions", [])]
    X = pd.concat([public, queries.iloc[: len(answered)]], ignore_index=True)
    y = np.concatenate([public_y, np.asarray(answered, dtype=str)])
    agreement = _surrogate_agreement(X, y, held_out, target)
    assert agreement <= baseline + 0.02, f"{len(answered)} answered: {agreement} vs {baseline}"
    assert answer.status_code == 403 and "raised the extraction alarm" in answer.json()["detail"]
    assert s.predict(rows(held_out, 1)).status_code == 403  # and the key stays blocked
    # A benign client's 200 held-out rows in one request are answered.
    benign = s.g.keys.create("predict", "analyst")
    assert s.predict(rows(held_out, 200, 1), key=benign).status_code == 200


def test_a_throttling_alarm_refuses_its_batch_then_serves_one_row_at_a_time(serve: Any) -> None:
    from mlwarden.attacks import uniform_noise

    s = serve(guards={"extraction": {"action": "throttle", "throttle_rate_per_s": 0.5}})
    phishing = datasets.load("phishing")
    queries = uniform_noise(phishing.X, 200, phishing.schema, seed=1)
    answer = s.predict(rows(queries, 200))
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "1"
    assert "now throttled to 0.5 rows/s" in answer.json()["detail"]
    s.clock.now += 2.0  # the refused batch spent its 200 rows of the burst
    assert s.predict(rows(queries, 1)).status_code == 200  # throttled, not blocked
    slowed = s.predict(rows(queries, 1, 1))
    assert slowed.status_code == 429 and slowed.headers["Retry-After"] == "2"


# -- the decision log -------------------------------------------------------------------------


class Locked:
    """Another process holding the serving database's write lock."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=0.1, isolation_level=None)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def _admin(s: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {s.keys['admin']}"}


def test_a_log_that_cannot_write_refuses_quickly_by_default_and_loses_nothing(
    serve: Any, phishing_rows: pd.DataFrame, tmp_path: Path
) -> None:
    s = serve(guards={"extraction": {"enabled": False}})
    lock = Locked(tmp_path / "serve.db")
    first = s.predict(rows(phishing_rows, 1))
    assert first.status_code == 200  # answered; its record waits for the lock
    s.clock.now += 2.5  # the record has waited longer than max_delay_s (2 s)
    refused = s.predict(rows(phishing_rows, 1))
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "2"
    assert "not writing" in refused.json()["detail"]
    ready = s.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["decision_log"]["backlog"] == 1
    assert ready.json()["decision_log"]["reason"].startswith("the decision log is not writing")
    metrics = s.client.get("/metrics", headers=_admin(s)).text
    assert "mlwarden_decision_log_backlog 1.0" in metrics
    assert "mlwarden_decision_log_stalled 1.0" in metrics
    feedback = s.client.post(
        "/v1/feedback",
        json={"request_id": first.json()["request_id"], "labels": ["phishing"]},
        headers={"Authorization": f"Bearer {s.keys['feedback']}"},
    )
    assert feedback.status_code == 503 and "Retry-After" in feedback.headers
    lock.release()
    assert s.g.decisions.settle(30.0)
    assert s.client.get("/readyz").json()["status"] == "ready"
    assert s.g.decisions.get(first.json()["request_id"]) is not None
    assert s.g.decisions.failed == 0


def test_a_log_set_to_fail_open_answers_and_says_so(
    serve: Any, phishing_rows: pd.DataFrame, tmp_path: Path
) -> None:
    s = serve(guards={"extraction": {"enabled": False}, "decisions": {"on_error": "open"}})
    lock = Locked(tmp_path / "serve.db")
    assert s.predict(rows(phishing_rows, 1)).status_code == 200
    s.clock.now += 2.5
    answer = s.predict(rows(phishing_rows, 1, 1))
    assert answer.status_code == 200 and answer.headers["X-Mlwarden-Fail-Open"] == "decisions"
    ready = s.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    lock.release()
    assert s.g.decisions.settle(30.0)
    assert s.g.decisions.get(answer.json()["request_id"]) is not None


# -- OpenAPI, docs and key revocation ---------------------------------------------------------


def test_openapi_declares_the_bearer_scheme_and_every_refusal(serve: Any) -> None:
    s = serve()
    spec = s.client.get("/openapi.json").json()
    (scheme,) = spec["components"]["securitySchemes"].values()
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    operations = {
        (path, method): op for path, item in spec["paths"].items() for method, op in item.items()
    }
    for (path, _method), op in operations.items():
        declared = set(op["responses"])
        assert "413" in declared, path
        if path not in ("/healthz", "/readyz"):
            assert {"401", "403", "429", "503"} <= declared and op["security"], path
    assert {"400", "422"} <= set(operations["/v1/predict", "post"]["responses"])


def test_every_keyed_operation_spends_the_rate_limit(serve: Any) -> None:
    s = serve(rate_limit={"rate_per_s": 0.5, "burst": 1})
    assert s.client.get("/metrics", headers=_admin(s)).status_code == 200
    refused = s.client.get("/metrics", headers=_admin(s))
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "2"


def test_docs_and_openapi_can_be_switched_off(serve: Any) -> None:
    s = serve(docs=False)
    assert s.client.get("/openapi.json").status_code == 404
    assert s.client.get("/docs").status_code == 404


def test_a_revocation_from_another_process_takes_effect_within_the_stated_delay(
    serve: Any, phishing_rows: pd.DataFrame, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from mlwarden.cli import app
    from mlwarden.serve._keys import REVOCATION_DELAY_S, KeyStore

    help_text = CliRunner().invoke(app, ["keys", "revoke", "--help"]).output
    assert f"within {REVOCATION_DELAY_S:g} s" in " ".join(help_text.split())
    s = serve()
    assert s.predict(rows(phishing_rows, 1)).status_code == 200
    with KeyStore(tmp_path / "serve.db") as cli_keys:  # what `mlwarden keys revoke` does
        cli_keys.revoke(s.keys["predict"].split("_")[1])
    s.clock.now += REVOCATION_DELAY_S
    assert s.predict(rows(phishing_rows, 1, 1)).status_code == 401
