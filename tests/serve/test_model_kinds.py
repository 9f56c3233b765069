"""Every kind of registered classifier served through the same guarded path: an imported ONNX
model and an imported torch classifier (weights with their recorded architecture) answer as a
scikit-learn model does, each guard refuses for each of them, and a model that cannot be served
says why before the server starts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")

from fastapi.testclient import TestClient

from mlwarden import datasets
from mlwarden.cli import main
from mlwarden.errors import ModelError
from mlwarden.lineage import LineageStore
from mlwarden.models import ModelRegistry, adapter_for, save_torch_classifier
from mlwarden.pipeline import LocalExecutor, import_spec, parse_spec
from mlwarden.serve import Deployment, build_server, close_server, create_app

SPEC = """\
name: NAME
data: {dataset: phishing, positive: phishing}
split: {test_size: 0.3, seed: 1}
model: {import: FILE}
checks:
  - {check: performance_floor, metric: roc_auc, min: 0.8}
register: {name: NAME}
"""
KINDS = ["sklearn", "onnx", "torch"]


def _onnx_bytes(X: pd.DataFrame, y: pd.Series) -> bytes:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=500).fit(X.to_numpy(np.float32), y)
    return bytes(to_onnx(model, X.to_numpy(np.float32)[:1]).SerializeToString())


def _torch_module(X: pd.DataFrame, y: pd.Series) -> Any:
    import torch
    from torch import nn

    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(X.shape[1], 16), nn.ReLU(), nn.Linear(16, 2))
    x = torch.as_tensor(X.to_numpy(np.float32)) * 0.5
    t = torch.as_tensor((y == "phishing").to_numpy().astype(np.int64))
    optimiser = torch.optim.Adam(module.parameters(), lr=0.05)
    for _ in range(150):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(module(x), t).backward()
        optimiser.step()
    return module.eval()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LineageStore]:
    """phish-sklearn@1 (trained), phish-onnx@1 and phish-torch@1 (imported with the data), and
    two imports that cannot be served: an ONNX file without data, a bare torch state dict."""
    import torch

    root = tmp_path_factory.mktemp("kinds")
    data = datasets.load("phishing")
    # fitted on the table's own column order, as a user fits one (the store's schema order is
    # alphabetical: the import records the order the model reads)
    X, y = data.X, data.y
    (root / "model.onnx").write_bytes(_onnx_bytes(X, y))
    # the torch model reads the columns times 0.5: the scaling is recorded with it
    module = _torch_module(X, y)
    scaled = save_torch_classifier(module, ["legitimate", "phishing"], X.shape[1], 0.5)
    (root / "model.safetensors").write_bytes(scaled)
    torch.save(module.state_dict(), root / "weights.pt")
    lineage = LineageStore(root / "store")
    trained = SPEC.replace("model: {import: FILE}", "train: {estimator: logistic_regression}")
    specs = [
        parse_spec(trained.replace("NAME", "phish-sklearn")),
        parse_spec(SPEC.replace("NAME", "phish-onnx").replace("FILE", "model.onnx"), base=root),
        parse_spec(
            SPEC.replace("NAME", "phish-torch").replace("FILE", "model.safetensors"), base=root
        ),
        import_spec(root / "model.onnx", "bare-onnx"),
        import_spec(root / "weights.pt", "bare-weights"),
    ]
    for spec in specs:
        result = LocalExecutor(lineage).run(spec)
        assert result.status == "completed", result.error
    yield lineage
    lineage.close()


@pytest.fixture(scope="module")
def benign() -> list[dict[str, int]]:
    frame = datasets.load("phishing").X.sample(n=200, random_state=5)
    return [{k: int(v) for k, v in r.items()} for r in frame.to_dict("records")]


@pytest.fixture
def serve(store: LineageStore, tmp_path: Path) -> Iterator[Any]:
    """Start a server of ``phish-KIND@1`` with the given settings: (guarded, client, key)."""
    started: list[Any] = []

    def start(kind: str, **settings: Any) -> tuple[Any, TestClient, str]:
        settings.setdefault("routes", [{"model": f"phish-{kind}@1"}])
        db = tmp_path / f"serve-{len(started)}.db"
        g = build_server(store, Deployment.model_validate(settings), serve_db=db)
        started.append(g)
        return g, TestClient(create_app(g)), g.keys.create("predict", "client")

    yield start
    for g in started:
        close_server(g)


def post(client: TestClient, key: str, rows: list[dict[str, Any]]) -> Any:
    return client.post(
        "/v1/predict", json={"rows": rows}, headers={"Authorization": f"Bearer {key}"}
    )


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_answers_what_its_model_computes(
    serve: Any, store: LineageStore, benign: list[dict[str, int]], kind: str
) -> None:
    g, client, key = serve(kind)
    answer = post(client, key, benign[:20])
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Mlwarden-Model"] == f"phish-{kind}@1"
    served = [p["probabilities"]["phishing"] for p in answer.json()["predictions"]]
    _, adapter = ModelRegistry(store).load_classifier(f"phish-{kind}@1")
    frame = pd.DataFrame(benign[:20], columns=g.schema.features)
    column = list(adapter.classes_).index("phishing")
    np.testing.assert_allclose(served, adapter.predict_proba(frame)[:, column], atol=1e-6)
    labels = [p["label"] for p in answer.json()["predictions"]]
    assert labels == ["phishing" if p > 0.5 else "legitimate" for p in served]


def test_the_torch_model_applies_its_recorded_input_scale(
    store: LineageStore, benign: list[dict[str, int]]
) -> None:
    import torch

    _, adapter = ModelRegistry(store).load_classifier("phish-torch@1")
    frame = pd.DataFrame(benign[:50])  # the order the model was fitted on
    layers = adapter.module[1:]  # type: ignore[attr-defined]  # the weights, unscaled
    x = torch.tensor(frame.to_numpy(np.float32))
    with torch.no_grad():
        as_recorded = torch.softmax(layers(x * 0.5), 1).numpy()
        unscaled = torch.softmax(layers(x), 1).numpy()
    np.testing.assert_allclose(adapter.predict_proba(frame), as_recorded, atol=1e-6)
    assert np.abs(adapter.predict_proba(frame) - unscaled).max() > 1e-3


@pytest.mark.parametrize("kind", ["onnx", "torch"])
def test_a_matrix_model_reads_columns_in_the_order_it_was_fitted_on(
    store: LineageStore, benign: list[dict[str, int]], kind: str
) -> None:
    registry = ModelRegistry(store)
    version, adapter = registry.load_classifier(f"phish-{kind}@1")
    media_type = version.manifest.model_media_type
    bare = adapter_for(store.read_artifact(version.manifest.model_sha256), media_type)
    fitted_order = pd.DataFrame(benign[:50])
    schema_order = fitted_order[sorted(fitted_order.columns)]
    np.testing.assert_allclose(
        adapter.predict_proba(schema_order), bare.predict_proba(fitted_order), atol=1e-6
    )
    assert np.abs(bare.predict_proba(schema_order) - bare.predict_proba(fitted_order)).max() > 0.1
    # the pipeline evaluated it in that order too: read by position in schema order, the
    # logistic model's AUC falls to about 0.78
    metrics = json.loads(store.read_artifact(version.manifest.artifacts["metrics"]))
    assert metrics["roc_auc"] > 0.95


def test_a_spec_names_the_column_order_of_a_model_fitted_on_another(
    store: LineageStore, tmp_path: Path
) -> None:
    data = datasets.load("phishing")
    reverse = list(data.X.columns)[::-1]
    (tmp_path / "reversed.onnx").write_bytes(_onnx_bytes(data.X[reverse], data.y))
    spec = SPEC.replace("NAME", "phish-reversed").replace("FILE", "reversed.onnx")
    source = "{import: reversed.onnx}"
    named = spec.replace(source, f"{{import: reversed.onnx, columns: {reverse}}}")
    result = LocalExecutor(store).run(parse_spec(named, base=tmp_path))
    assert result.status == "completed", result.error
    version = ModelRegistry(store).get(result.model_version or "")
    assert json.loads(store.read_artifact(version.manifest.artifacts["metrics"]))["roc_auc"] > 0.95
    wrong = spec.replace(source, f"{{import: reversed.onnx, columns: {reverse[1:]}}}")
    failed = LocalExecutor(store).run(parse_spec(wrong, base=tmp_path))
    assert failed.status == "failed"
    assert f"left out: ['{reverse[0]}']" in (failed.error or "")


def test_a_registered_torch_classifier_is_audited(
    store: LineageStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["audit", "--model", "phish-torch@1", "--store", str(store.root), "--checks",
                 "performance", "--out", str(tmp_path / "audit")])  # fmt: skip
    said = capsys.readouterr()
    assert code == 0, said.out + said.err
    assert (tmp_path / "audit").is_dir()


@pytest.mark.parametrize("kind", KINDS)
def test_the_schema_guard_refuses_a_bad_row_for_each_kind(
    serve: Any, benign: list[dict[str, int]], kind: str
) -> None:
    _, client, key = serve(kind)
    bad = post(client, key, [{**benign[0], "having_IPhaving_IP_Address": "yes"}])
    assert bad.status_code == 422 and "having_IPhaving_IP_Address" in bad.text


@pytest.mark.parametrize("kind", KINDS)
def test_the_rate_limit_refuses_for_each_kind(
    serve: Any, benign: list[dict[str, int]], kind: str
) -> None:
    _, client, key = serve(kind, rate_limit={"rate_per_s": 0.01, "burst": 3})
    assert post(client, key, benign[:3]).status_code == 200
    refused = post(client, key, benign[3:4])
    assert refused.status_code == 429 and "Retry-After" in refused.headers


@pytest.mark.parametrize("kind", KINDS)
def test_the_extraction_guard_blocks_a_thief_for_each_kind(
    serve: Any, benign: list[dict[str, int]], kind: str
) -> None:
    g, client, key = serve(kind, rate_limit={"rate_per_s": 1e6, "burst": 10**6})
    for start in range(0, 200, 20):  # a benign client is answered throughout
        assert post(client, key, benign[start : start + 20]).status_code == 200
    thief = g.keys.create("predict", "thief")
    rng = np.random.default_rng(0)
    columns = g.schema.features
    status = []
    for _ in range(40):  # uniform random rows off the data's manifold, as a thief sends
        rows = [
            {c: int(v) for c, v in zip(columns, rng.choice([-1, 0, 1], len(columns)), strict=True)}
            for _ in range(20)
        ]
        status.append(post(client, thief, rows).status_code)
        if status[-1] == 403:
            break
    assert status[-1] == 403, status
    assert g.keys.authenticate(thief).key_id in g.blocked  # type: ignore[union-attr]
    assert post(client, key, benign[:1]).status_code == 200


@pytest.mark.parametrize("kind", KINDS)
def test_output_hardening_and_drift_apply_to_each_kind(
    serve: Any, benign: list[dict[str, int]], kind: str
) -> None:
    g, client, key = serve(
        kind,
        output={"mode": "label"},
        guards={"drift": {"window": 100, "every": 100}, "extraction": {"enabled": False}},
    )
    answer = post(client, key, benign[:100])
    assert answer.status_code == 200
    assert all(p["probabilities"] is None for p in answer.json()["predictions"])
    state = g.monitor.wait()
    assert state is not None and state.rows == 100 and not state.input_drifted


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("bare-onnx@1", "registered without its schema and training split"),
        ("bare-weights@1", "torch weights without the network's architecture"),
    ],
)
def test_a_model_that_cannot_be_served_says_why(
    store: LineageStore, tmp_path: Path, ref: str, reason: str
) -> None:
    deployment = Deployment.single(ref)
    with pytest.raises(ModelError, match=f"{ref} cannot be served: .*{reason}"):
        build_server(store, deployment, serve_db=tmp_path / "serve.db")


def test_rows_are_encoded_once_for_the_model_the_shadow_and_the_detectors(
    serve: Any, benign: list[dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlwarden.serve._extraction import FeatureSpace
    from mlwarden.serve._runtime import ServedModel

    frames: list[int] = []
    encoded: list[int] = []
    predict, transform = ServedModel.predict_proba, FeatureSpace.transform
    transform_matrix = FeatureSpace.transform_matrix

    def recording_predict(self: ServedModel, frame: pd.DataFrame) -> Any:
        frames.append(id(frame))
        return predict(self, frame)

    def recording_transform(self: FeatureSpace, rows: Any) -> Any:
        encoded.append(len(rows))
        return transform(self, rows)

    def recording_transform_matrix(self: FeatureSpace, values: Any, columns: Any) -> Any:
        encoded.append(len(values))
        return transform_matrix(self, values, columns)

    g, client, key = serve("sklearn", shadow="phish-onnx@1")
    monkeypatch.setattr(ServedModel, "predict_proba", recording_predict)
    monkeypatch.setattr(FeatureSpace, "transform", recording_transform)
    monkeypatch.setattr(FeatureSpace, "transform_matrix", recording_transform_matrix)
    answer = post(client, key, benign[:5])
    assert answer.status_code == 200
    g.decisions.flush()
    assert len(frames) == 2 and len(set(frames)) == 1  # the route and the shadow: one table
    assert encoded == [5]  # the detectors' vectors: built once for the request's rows
    shadow = g.decisions.get(answer.json()["request_id"]).shadow[0]
    assert shadow.model_ref == "phish-onnx@1" and len(shadow.output["labels"]) == 5
