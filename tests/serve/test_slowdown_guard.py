"""The slowdown guard in the server: compute per answer, exit monitoring, caps (DeepSloth)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")

from fastapi.testclient import TestClient

from mlwarden.attacks import deepsloth
from mlwarden.lineage import LineageStore
from mlwarden.models import ModelRegistry
from mlwarden.models._torch import load_digits_split
from mlwarden.pipeline import LocalExecutor, parse_spec
from mlwarden.serve import Deployment, build_server, close_server, create_app
from tests.pipeline.test_early_exit import SPEC


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A registered tiny SDN, a server for it, clean test images and DeepSloth ones."""
    root = tmp_path_factory.mktemp("slow")
    store = LineageStore(root / "store")
    # q = 0.7: the tiny network answers 89% of clean images before its last exit
    spec = parse_spec(SPEC.replace("threshold: 0.9", "threshold: 0.7"))
    assert LocalExecutor(store).run(spec).status == "completed"
    _, network, info = ModelRegistry(store).load_early_exit("tiny-sdn@1")
    split = load_digits_split(test_size=info["test_size"], seed=info["seed"])
    clean = split.X_test[:300]
    attack = deepsloth(
        network, clean[:100], eps=0.25, threshold=info["threshold"], steps=30, latency=False
    ).adversarial
    deployment = Deployment.single(
        "tiny-sdn@1",
        rate_limit={"rate_per_s": 1e6, "burst": 10**6},
        guards={"extraction": {"action": "log"}, "slowdown": {"max_exit_when_alarmed": 0}},
    )
    g = build_server(store, deployment, serve_db=root / "serve.db")
    yield {"g": g, "client": TestClient(create_app(g)), "clean": clean, "attack": attack}
    close_server(g)
    store.close()


def as_rows(pixels: np.ndarray) -> list[dict[str, int]]:
    """Images in [0, 1] as the API takes them: integer pixels 0..16 (what an attacker sends)."""
    columns = [f"pixel_{i}_{j}" for i in range(8) for j in range(8)]
    values = np.clip(np.rint(pixels * 16), 0, 16).astype(int)
    return [dict(zip(columns, row.tolist(), strict=True)) for row in values]


def send(images: dict[str, Any], key: str, pixels: np.ndarray) -> Any:
    return images["client"].post(
        "/v1/predict", json={"rows": as_rows(pixels)}, headers={"Authorization": f"Bearer {key}"}
    )


def test_every_answer_says_which_exit_answered_and_what_it_cost(images: dict[str, Any]) -> None:
    key = images["g"].keys.create("predict", "reader")
    answer = send(images, key, images["clean"][:20])
    assert answer.status_code == 200
    predictions = answer.json()["predictions"]
    exits = [p["exit"] for p in predictions]
    compute = [p["compute"] for p in predictions]
    assert set(exits) <= {0, 1, 2, 3} and len(set(exits)) > 1
    fractions = images["g"].routes[0].early_exit.network.exit_fractions
    assert all(c == pytest.approx(float(fractions[e])) for e, c in zip(exits, compute, strict=True))
    assert not any(p["capped"] for p in predictions)


def test_clean_clients_raise_no_alarm(images: dict[str, Any]) -> None:
    for i in range(3):
        key = images["g"].keys.create("predict", f"clean-{i}")
        for pixels in images["clean"][i * 100 : (i + 1) * 100]:
            answer = send(images, key, pixels[None, :])
            assert answer.status_code == 200
            assert "slowdown" not in answer.headers.get("X-Mlwarden-Alarm", "")
            assert "X-Mlwarden-Compute-Capped" not in answer.headers


def test_a_client_switching_to_deepsloth_is_caught_within_20_requests_then_capped(
    images: dict[str, Any],
) -> None:
    key = images["g"].keys.create("predict", "sloth")
    for pixels in images["clean"][:40]:
        alarm = send(images, key, pixels[None, :]).headers.get("X-Mlwarden-Alarm", "")
        assert "slowdown" not in alarm
    delay = None
    for n, pixels in enumerate(images["attack"], start=1):
        answer = send(images, key, pixels[None, :])
        if "slowdown" in answer.headers.get("X-Mlwarden-Alarm", ""):
            delay = n
            break
    assert delay is not None and delay <= 20, delay
    capped = send(images, key, images["attack"][50:60]).json()["predictions"]
    assert all(p["capped"] and p["exit"] == 0 for p in capped)  # answered from exit 0 at most
    first = float(images["g"].routes[0].early_exit.network.exit_fractions[0])
    assert all(p["compute"] == pytest.approx(first) for p in capped)
    admin = images["g"].keys.create("admin", "ops")
    text = images["client"].get("/metrics", headers={"Authorization": f"Bearer {admin}"}).text
    # (the series exists from the start at 0: the alarm must have counted)
    assert re.search(r'mlwarden_guard_alarms_total\{guard="slowdown"\} [1-9]', text)
    assert "mlwarden_capped_answers_total 10.0" in text
    assert 'mlwarden_inference_compute_total{model="tiny-sdn@1"}' in text
