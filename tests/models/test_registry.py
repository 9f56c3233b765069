"""Models are saved without pickle, signed at registration, and loaded only once verified."""

from __future__ import annotations

import io
import json
import sqlite3
import zipfile
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression

from mlwarden.errors import (
    QueryBudgetExceeded,
    RecordNotFoundError,
    SignatureError,
    UntrustedArtifactError,
)
from mlwarden.lineage import LineageStore, verify_store
from mlwarden.models import ModelRegistry, SklearnAdapter, dumps_model, loads_model
from mlwarden.pipeline import LocalExecutor, PipelineSpec


@pytest.fixture
def registered(store: LineageStore, fast_spec: PipelineSpec) -> ModelRegistry:
    result = LocalExecutor(store).run(fast_spec)
    assert result.model_version == "german@1"
    return ModelRegistry(store)


def test_a_registered_model_loads_verifies_and_predicts(registered: ModelRegistry) -> None:
    version, model = registered.load("german@latest")
    assert version.ref == "german@1"
    assert list(model.classes_) == ["bad", "good"]
    from mlwarden import datasets

    X = datasets.load("german").X.head(5)
    assert model.predict_proba(X).shape == (5, 2)
    assert model.queries == 5


def test_references_resolve_or_say_what_exists(registered: ModelRegistry) -> None:
    assert registered.get("german").ref == registered.get("german@1").ref
    with pytest.raises(RecordNotFoundError, match="registered: \\['german'\\]"):
        registered.get("phishing@1")
    with pytest.raises(RecordNotFoundError, match="no version 7"):
        registered.get("german@7")
    with pytest.raises(RecordNotFoundError, match="malformed"):
        registered.get("german@@1")


def test_a_stage_names_the_version_last_promoted_to_it(
    registered: ModelRegistry, store: LineageStore, fast_spec: PipelineSpec
) -> None:
    from mlwarden.models import Signer

    signer = Signer.load_or_create()
    with pytest.raises(RecordNotFoundError, match="was promoted to 'production'"):
        registered.get("german@production")
    registered.promote("german@1", "production", signer)
    better = fast_spec.model_copy(update={"name": "german"})
    LocalExecutor(store).run(
        better.model_copy(update={"train": better.train.model_copy(update={"grid": {"C": [0.5]}})})
    )
    assert registered.get("german@latest").ref == "german@2"
    assert registered.get("german@production").ref == "german@1"  # promotion is explicit
    registered.promote("german@2", "production", signer)
    assert registered.load("german@production")[0].ref == "german@2"
    with pytest.raises(RecordNotFoundError, match="not 'latest'"):
        registered.promote("german@1", "Prod!", signer)
    assert verify_store(store).ok


def test_a_forged_promotion_is_refused(registered: ModelRegistry, store: LineageStore) -> None:
    from mlwarden.models import Signer

    registered.promote("german@1", "production", Signer.load_or_create())
    forged = {
        "name": "german", "version": 1, "stage": "canary",
        "model_sha256": registered.get("german@1").manifest.model_sha256,
        "signer": Signer.load_or_create().public_key_hex,
        "signature": "00" * 64,
    }  # fmt: skip
    store.append("model_stage", "german", forged, key="canary")
    with pytest.raises(SignatureError):
        registered.get("german@canary")


def test_a_changed_model_file_is_refused(registered: ModelRegistry) -> None:
    version = registered.get("german@1")
    path = registered.store.artifacts.path(version.manifest.model_sha256)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match="artifact model fails"):
        registered.load("german@1")


def test_a_manifest_signed_by_a_key_the_policy_does_not_pin_is_refused(
    registered: ModelRegistry, tmp_path: Path
) -> None:
    from mlwarden.errors import UntrustedKeyError
    from mlwarden.lineage import Signer, TrustPolicy

    other = TrustPolicy(tmp_path / "trust.json")
    other.pin(Signer.generate().public_key_hex)  # pins someone else's key only
    with pytest.raises(UntrustedKeyError, match="is not pinned in the trust policy"):
        ModelRegistry(registered.store, other).load("german@1")


def test_an_edited_manifest_fails_its_signature(registered: ModelRegistry) -> None:
    db = sqlite3.connect(registered.store.root / "lineage.db")
    db.execute("DROP TRIGGER records_no_update")
    (payload,) = db.execute("SELECT payload FROM records WHERE kind='model_version'").fetchone()
    record = json.loads(payload)
    record["manifest"]["metrics"]["f1"] = 0.999
    db.execute("UPDATE records SET payload=? WHERE kind='model_version'", (json.dumps(record),))
    db.commit()
    with pytest.raises(SignatureError, match="signature does not verify"):
        registered.load("german@1")
    assert not verify_store(registered.store).ok


def test_the_private_key_is_readable_by_its_owner_only(registered: ModelRegistry) -> None:
    from mlwarden.lineage import default_key_dir

    assert (default_key_dir() / "signing.key").stat().st_mode & 0o777 == 0o600
    assert not (registered.store.root / "keys" / "signing.key").exists()


def _with_untrusted_type(data: bytes) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(src.read("schema.json"))
    schema["__class__"], schema["__module__"] = "Popen", "subprocess"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, json.dumps(schema) if name == "schema.json" else src.read(name))
    return out.getvalue()


def test_loading_refuses_types_nobody_trusted() -> None:
    data = dumps_model(LogisticRegression().fit([[0.0], [1.0]], [0, 1]))
    with pytest.raises(UntrustedArtifactError, match=r"subprocess\.Popen"):
        loads_model(_with_untrusted_type(data))


def test_saving_is_reproducible_and_lossless() -> None:
    model = LogisticRegression().fit([[0.0], [1.0], [2.0]], [0, 1, 1])
    data = dumps_model(model)
    assert data == dumps_model(model)
    assert (loads_model(data).coef_ == model.coef_).all()


def test_the_adapter_refuses_queries_beyond_its_budget() -> None:
    model = SklearnAdapter(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), budget=3)
    model.predict([[0.0], [1.0]])
    with pytest.raises(QueryBudgetExceeded, match="2 spent, 2 asked"):
        model.predict_proba([[0.0], [1.0]])
    assert model.queries == 2


@pytest.mark.parametrize("classes", [2, 3])
def test_logistic_regression_offers_its_exact_input_gradient(classes: int) -> None:
    import numpy as np
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)) * [1, 10, 0.1, 3]
    y = (X[:, 0] + X[:, 1] / 10 > 0).astype(int) + (classes == 3) * (X[:, 2] > 0.05)
    model = SklearnAdapter(make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y))
    assert model.has_gradient
    gradient = model.loss_gradient(X[:5], y[:5])

    def loss(row: np.ndarray, label: int) -> float:
        return float(-np.log(model.estimator.predict_proba(row[None, :])[0, label]))

    for i in range(5):
        for j in range(4):
            step = np.zeros(4)
            step[j] = 1e-5 * max(1.0, abs(X[i, j]))
            numeric = (loss(X[i] + step, y[i]) - loss(X[i] - step, y[i])) / (2 * step[j])
            assert gradient[i, j] == pytest.approx(numeric, rel=1e-3, abs=1e-6)


def test_a_tree_offers_no_gradient() -> None:
    from sklearn.tree import DecisionTreeClassifier

    from mlwarden.errors import ModelError

    model = SklearnAdapter(DecisionTreeClassifier().fit([[0.0], [1.0]], [0, 1]))
    assert not model.has_gradient
    with pytest.raises(ModelError, match="offers no input gradient"):
        model.loss_gradient([[0.5]], [0])


def test_a_score_only_model_is_adapted_through_its_decision_function() -> None:
    import numpy as np
    from sklearn.svm import LinearSVC

    from mlwarden import datasets

    d = datasets.load("phishing")
    svm = LinearSVC().fit(d.X.iloc[:2000], d.y.iloc[:2000])
    model = SklearnAdapter(svm)
    proba = model.predict_proba(d.X.iloc[:50])
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert (model.predict(d.X.iloc[:50]) == svm.predict(d.X.iloc[:50])).all()
