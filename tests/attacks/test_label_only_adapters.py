"""Label-only line search through the other adapter kinds: an ONNX export of a linear model."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mlwarden.attacks import extract_linear_labels

pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")


def test_an_onnx_linear_model_is_recovered_from_its_labels() -> None:
    from skl2onnx.common.data_types import FloatTensorType

    from mlwarden.models import OnnxAdapter

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0, 3.0, -1.0]) + 0.3 + rng.logistic(size=400) > 0
    model = LogisticRegression().fit(X, y.astype(int))
    onx = skl2onnx.convert_sklearn(
        model,
        initial_types=[("X", FloatTensorType([None, 6]))],
        options={id(model): {"zipmap": False}},
    )
    adapter = OnnxAdapter(bytes(onx.SerializeToString()), classes=[0, 1])
    result = extract_linear_labels(adapter, 6, feature_box=(-3.0, 3.0), true_model=model)
    # float32 inference bounds the precision; still within 1e-3 of the unit-norm weights
    assert result.max_abs_weight_error is not None and result.max_abs_weight_error < 1e-3
    assert result.queries == adapter.queries <= 20 * 7
    assert result.fidelity_uniform is not None and result.fidelity_uniform >= 0.99
