"""ONNX models go through the same adapter protocol, queries counted, budget enforced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")

from sklearn.ensemble import GradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from mlwarden import datasets  # noqa: E402
from mlwarden.errors import ModelError, QueryBudgetExceeded  # noqa: E402
from mlwarden.models import OnnxAdapter  # noqa: E402


def _onnx(model: object, n_features: int, zipmap: bool) -> bytes:
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(model): {"zipmap": zipmap}}
    onx = skl2onnx.convert_sklearn(
        model, initial_types=[("X", FloatTensorType([None, n_features]))], options=options
    )
    return bytes(onx.SerializeToString())


@pytest.fixture(scope="module")
def phishing() -> tuple[object, object]:
    d = datasets.load("phishing")
    return d.X.iloc[:2000].astype(float), d.y.iloc[:2000]


@pytest.mark.parametrize("zipmap", [True, False])
@pytest.mark.parametrize("kind", [LogisticRegression, GradientBoostingClassifier])
def test_onnx_probabilities_match_the_sklearn_model(
    phishing: tuple,
    kind: type,
    zipmap: bool,  # type: ignore[type-arg]
) -> None:
    X, y = phishing
    model = kind().fit(X, y) if kind is not LogisticRegression else kind(max_iter=500).fit(X, y)
    classes = None if zipmap else list(model.classes_)
    adapter = OnnxAdapter(_onnx(model, X.shape[1], zipmap), classes=classes)
    assert list(adapter.classes_) == list(model.classes_)
    np.testing.assert_allclose(adapter.predict_proba(X), model.predict_proba(X), atol=1e-4)
    assert (adapter.predict(X) == model.predict(X)).mean() > 0.999
    assert adapter.queries == 2 * len(X)


def test_the_budget_refuses_a_call_whole(phishing: tuple) -> None:  # type: ignore[type-arg]
    X, y = phishing
    model = LogisticRegression(max_iter=500).fit(X, y)
    adapter = OnnxAdapter(_onnx(model, X.shape[1], True), budget=10)
    adapter.predict(X.iloc[:8])
    with pytest.raises(QueryBudgetExceeded):
        adapter.predict(X.iloc[:3])
    assert adapter.queries == 8


def test_bad_model_bytes_and_bad_input_are_model_errors(phishing: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        OnnxAdapter(b"not onnx")
    X, y = phishing
    adapter = OnnxAdapter(_onnx(LogisticRegression(max_iter=500).fit(X, y), X.shape[1], True))
    with pytest.raises(ModelError, match="refused the input"):
        adapter.predict_proba(np.zeros((2, 5)))


def test_an_onnx_model_can_be_attacked(phishing: tuple) -> None:  # type: ignore[type-arg]
    from mlwarden.attacks import bundled_threat_model, tabular_evasion

    X, y = phishing
    model = GradientBoostingClassifier(n_estimators=30, random_state=0).fit(X, y)
    adapter = OnnxAdapter(_onnx(model, X.shape[1], True), feature_names=list(X.columns))
    rows = X[(y == "phishing").to_numpy()].iloc[:10]
    result = tabular_evasion(adapter, rows, bundled_threat_model("phishing"), max_cost=2)
    assert result.queries == adapter.queries > 0
    assert result.success_rate > 0
