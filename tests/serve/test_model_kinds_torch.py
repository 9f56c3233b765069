"""Torch models as the server loads them: a classifier rebuilt from its recorded architecture
(refusing what it cannot record or what does not fit), and an early-exit network whose input
scaling comes from its own training record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")

import torch
from fastapi.testclient import TestClient
from torch import nn

from mlwarden import datasets
from mlwarden.errors import ModelError
from mlwarden.lineage import LineageStore
from mlwarden.models import (
    DIGITS_INPUT_SCALE,
    ModelRegistry,
    load_torch_classifier,
    save_torch_classifier,
)
from mlwarden.pipeline import LocalExecutor, parse_spec
from mlwarden.serve import Deployment, build_server, close_server, create_app
from tests.pipeline.test_early_exit import SPEC

CNN = [
    nn.Unflatten(1, (1, 8, 8)),
    nn.Conv2d(1, 4, 3, padding=1),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Flatten(),
    nn.Linear(64, 10),
]


def test_a_saved_cnn_comes_back_with_the_same_answers_and_its_scale() -> None:
    torch.manual_seed(0)
    module = nn.Sequential(*CNN).eval()
    data = save_torch_classifier(module, list(range(10)), 64, DIGITS_INPUT_SCALE)
    loaded, config = load_torch_classifier(data)
    pixels = torch.tensor(datasets.load("digits").X.to_numpy(np.float32)[:20])
    with torch.no_grad():
        np.testing.assert_allclose(
            loaded(pixels).numpy(), module(pixels * DIGITS_INPUT_SCALE).numpy(), atol=1e-6
        )
    assert config.input_scale == DIGITS_INPUT_SCALE and config.classes == list(range(10))


def test_a_layer_that_cannot_be_recorded_is_refused_naming_it() -> None:
    module = nn.Sequential(nn.Linear(4, 8), nn.LSTM(8, 2))
    with pytest.raises(ModelError, match="LSTM is not a layer mlwarden can record"):
        save_torch_classifier(module, [0, 1], 4)


def test_weights_that_do_not_fit_the_recorded_layers_are_refused() -> None:
    from safetensors.torch import save

    data = save_torch_classifier(nn.Sequential(nn.Linear(4, 2)), [0, 1], 4)
    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    wrong = {"0.weight": torch.zeros(2, 5), "0.bias": torch.zeros(2)}
    forged = save(wrong, metadata=header["__metadata__"])
    with pytest.raises(ModelError, match=r"tensor '0.weight' is \(2, 5\)"):
        load_torch_classifier(forged)


def test_classes_and_columns_must_fit_the_layers() -> None:
    with pytest.raises(ModelError, match="expected one logit per class"):
        save_torch_classifier(nn.Sequential(nn.Linear(4, 3)), [0, 1], 4)
    with pytest.raises(ModelError, match="layers do not take 5 columns"):
        save_torch_classifier(nn.Sequential(nn.Linear(4, 2)), [0, 1], 5)


@pytest.fixture(scope="module")
def sdn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("sdn-scale")
    store = LineageStore(root / "store")
    spec = SPEC.replace("epochs: 8", "epochs: 2").replace("rows: 60", "rows: 20")
    assert LocalExecutor(store).run(parse_spec(spec)).status == "completed"
    g = build_server(
        store,
        Deployment.single("tiny-sdn@1", guards={"extraction": {"enabled": False}}),
        serve_db=root / "serve.db",
    )
    yield {"store": store, "g": g, "client": TestClient(create_app(g))}
    close_server(g)
    store.close()


def test_the_early_exit_scale_is_read_from_its_training_record(sdn: dict[str, Any]) -> None:
    _, network, info = ModelRegistry(sdn["store"]).load_early_exit("tiny-sdn@1")
    assert info["input_scale"] == DIGITS_INPUT_SCALE
    served = sdn["g"].routes[0].early_exit
    assert served.input_scale == info["input_scale"]
    pixels = datasets.load("digits").X.iloc[:30]
    rows = [{k: int(v) for k, v in r.items()} for r in pixels.to_dict("records")]
    key = sdn["g"].keys.create("predict", "reader")
    answer = sdn["client"].post(
        "/v1/predict", json={"rows": rows}, headers={"Authorization": f"Bearer {key}"}
    )
    assert answer.status_code == 200
    expected = network.infer(pixels.to_numpy(np.float32) * info["input_scale"], info["threshold"])
    assert [p["label"] for p in answer.json()["predictions"]] == expected.predictions.tolist()
    assert [p["exit"] for p in answer.json()["predictions"]] == list(expected.exit_index)


def test_the_schema_guard_refuses_an_out_of_range_pixel(sdn: dict[str, Any]) -> None:
    key = sdn["g"].keys.create("predict", "bad-pixels")
    row = {c: 0 for c in sdn["g"].schema.features}
    row["pixel_0_0"] = 1000
    refused = sdn["client"].post(
        "/v1/predict", json={"rows": [row]}, headers={"Authorization": f"Bearer {key}"}
    )
    assert refused.status_code == 422 and "pixel_0_0" in refused.text


def test_a_saved_file_is_imported_as_it_is(tmp_path: Path) -> None:
    from mlwarden.models import TORCH_MEDIA_TYPE, import_model_file

    torch.manual_seed(0)
    data = save_torch_classifier(nn.Sequential(*CNN), list(range(10)), 64, DIGITS_INPUT_SCALE)
    (tmp_path / "cnn.safetensors").write_bytes(data)
    imported = import_model_file(tmp_path / "cnn.safetensors")
    assert imported.media_type == TORCH_MEDIA_TYPE and imported.data == data
    assert imported.info()["layers"] == len(CNN)
