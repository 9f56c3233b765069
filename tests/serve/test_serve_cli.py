"""``mlwarden keys``, ``mlwarden decisions show`` and ``mlwarden serve``'s refusal to start."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mlwarden import datasets
from mlwarden.lineage import LineageStore
from mlwarden.pipeline import LocalExecutor, parse_spec
from mlwarden.serve import SERVE_DB, Deployment, build_server, close_server, create_app
from tests.cli.test_cli import mlwarden
from tests.serve.test_app import SPEC


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "store"
    store = LineageStore(root)
    assert LocalExecutor(store).run(parse_spec(SPEC.replace("REPLACE_C", "1.0"))).status == (
        "completed"
    )
    store.close()
    return root


def test_a_key_is_printed_once_and_only_its_hash_is_kept(store_dir: Path, tmp_path: Path) -> None:
    created = mlwarden(
        "keys",
        "create",
        "--role",
        "feedback",
        "--name",
        "soc",
        "--store",
        str(store_dir),
        cwd=tmp_path,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("mlw_") and "not shown again" in created.stderr
    assert key.encode() not in (store_dir / SERVE_DB).read_bytes()
    listed = mlwarden("keys", "list", "--store", str(store_dir), cwd=tmp_path)
    key_id = key.split("_")[1]
    assert key_id in listed.stdout and "feedback" in listed.stdout and key not in listed.stdout
    revoked = mlwarden("keys", "revoke", key_id, "--store", str(store_dir), cwd=tmp_path)
    assert revoked.returncode == 0 and f"revoked {key_id}" in revoked.stdout
    bad = mlwarden("keys", "create", "--role", "root", "--store", str(store_dir), cwd=tmp_path)
    assert bad.returncode == 2 and "predict, feedback, explain or admin" in bad.stderr


def test_a_past_decision_is_reproduced_and_explained(store_dir: Path, tmp_path: Path) -> None:
    store = LineageStore(store_dir)
    g = build_server(store, Deployment.single("phish@1"), serve_db=store_dir / SERVE_DB)
    key = g.keys.create("predict", "analyst")
    row = {k: int(v) for k, v in datasets.load("phishing").X.iloc[7].items()}
    answer = TestClient(create_app(g)).post(
        "/v1/predict", json={"rows": [row]}, headers={"Authorization": f"Bearer {key}"}
    )
    request_id = answer.json()["request_id"]
    close_server(g)  # flushes the decision log
    store.close()
    shown = mlwarden("decisions", "show", request_id, "--store", str(store_dir), cwd=tmp_path)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert shown.stdout.startswith(f"predict request {request_id}")
    assert "reproduced" in shown.stdout and "phish@1" in shown.stdout
    as_json = mlwarden(
        "decisions", "show", request_id, "--json", "--store", str(store_dir), cwd=tmp_path
    )
    found = json.loads(as_json.stdout)
    (only,) = found["rows"]
    assert only["matches"] and only["label"] == answer.json()["predictions"][0]["label"]
    assert len(only["contributions"]) == 5
    deltas = [abs(c["delta"]) for c in only["contributions"]]
    assert deltas == sorted(deltas, reverse=True)  # the features the decision rested on first
    # SHAP of the answered class: every input column, largest first, adding up to the
    # model's log-odds for that class (the served model is a logistic regression)
    shap = only["shap"]
    values = [v["shap"] for v in shap["values"]]
    assert (shap["method"], shap["output"]) == ("linear", "log-odds") and len(values) == 23
    assert [abs(v) for v in values] == sorted(map(abs, values), reverse=True)
    p = only["probability"]
    assert shap["base_value"] + sum(values) == pytest.approx(np.log(p / (1 - p)), abs=1e-6)
    assert "SHAP (linear, log-odds of" in shown.stdout
    missing = mlwarden("decisions", "show", "0" * 32, "--store", str(store_dir), cwd=tmp_path)
    assert missing.returncode == 4 and "no decision" in missing.stderr


def test_serve_refuses_a_model_that_fails_verification(store_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(store_dir, copy)
    store = LineageStore(copy)
    version = store.records("model_version", subject="phish")[0]
    path = store.artifacts.path(version.payload["manifest"]["model_sha256"])
    store.close()
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    started = mlwarden("serve", "phish@1", "--store", str(copy), "--port", "0", cwd=tmp_path)
    assert started.returncode == 5, started.stdout + started.stderr
    assert "phish@1" in started.stderr and "Traceback" not in started.stderr


def test_retrain_from_feedback_adds_the_labelled_rows_as_a_new_tracked_run(
    store_dir: Path, tmp_path: Path
) -> None:
    store = LineageStore(store_dir)
    g = build_server(store, Deployment.single("phish@latest"), serve_db=store_dir / SERVE_DB)
    client = TestClient(create_app(g))
    keys = {role: g.keys.create(role, role) for role in ("predict", "feedback")}
    frame = datasets.load("phishing").X.iloc[100:130]
    payload = [{k: int(v) for k, v in r.items()} for r in frame.to_dict("records")]
    answer = client.post(
        "/v1/predict",
        json={"rows": payload},
        headers={"Authorization": f"Bearer {keys['predict']}"},
    )
    labels = ["phishing"] * len(payload)  # an analyst's verdicts
    stored = client.post(
        "/v1/feedback",
        json={"request_id": answer.json()["request_id"], "labels": labels},
        headers={"Authorization": f"Bearer {keys['feedback']}"},
    )
    assert stored.status_code == 200
    close_server(g)
    before = len(store.records("model_version", subject="phish"))
    store.close()
    spec = tmp_path / "phish.yaml"
    spec.write_text(SPEC.replace("REPLACE_C", "1.0"))
    result = mlwarden(
        "retrain", str(spec), "--from-feedback", "--store", str(store_dir), cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "30 feedback row(s)" in result.stdout
    assert f"registered phish@{before + 1}" in result.stdout
    store = LineageStore(store_dir)
    ended = store.records("run_ended")[-1].payload
    feedback = store.read_artifact(ended["artifacts"]["source.feedback"]).decode()
    assert len(feedback.splitlines()) == 1 + 30 and feedback.count("phishing") == 30
    store.close()
    again = mlwarden(
        "retrain", str(spec), "--from-feedback", "--store", str(store_dir), cwd=tmp_path
    )
    assert again.returncode == 0 and "0 step(s) executed" in again.stdout
    nothing = mlwarden("retrain", str(spec), "--store", str(store_dir), cwd=tmp_path)
    assert nothing.returncode == 2 and "--from-feedback" in nothing.stderr
