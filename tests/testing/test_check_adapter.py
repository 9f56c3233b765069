"""check_adapter over every shipped adapter, and over adapters broken on purpose."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from mlwarden.errors import DataError
from mlwarden.models import (
    HardenedModel,
    ModelAdapter,
    OutputHardening,
    RecordingModel,
    SklearnAdapter,
)
from mlwarden.models._adapter import MeteredModel
from mlwarden.testing import check_adapter

ALL_CHECKS = [
    "classes",
    "predict_proba",
    "predict",
    "query_counting",
    "budget",
    "gradient",
    "deterministic",
    "wrong_width",
    "nan",
]
WITHOUT_GRADIENT = [c for c in ALL_CHECKS if c != "gradient"]


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Iris (three classes, four features): the training set and twelve rows to probe with."""
    X, y = load_iris(return_X_y=True)
    return X, y, X[::13]


@pytest.fixture(scope="module")
def logistic(iris: tuple[np.ndarray, np.ndarray, np.ndarray]) -> LogisticRegression:
    X, y, _ = iris
    return LogisticRegression(max_iter=500).fit(X, y)


@pytest.fixture(scope="module")
def tree(iris: tuple[np.ndarray, np.ndarray, np.ndarray]) -> DecisionTreeClassifier:
    X, y, _ = iris
    return DecisionTreeClassifier(max_depth=3, random_state=0).fit(X, y)


def test_sklearn_adapter_on_a_logistic_model_passes_every_check(
    iris: tuple[np.ndarray, np.ndarray, np.ndarray], logistic: LogisticRegression
) -> None:
    ran = check_adapter(lambda budget: SklearnAdapter(logistic, budget=budget), iris[2])
    assert ran == ALL_CHECKS


def test_sklearn_adapter_on_a_tree_passes_without_gradients(
    iris: tuple[np.ndarray, np.ndarray, np.ndarray], tree: DecisionTreeClassifier
) -> None:
    ran = check_adapter(lambda budget: SklearnAdapter(tree, budget=budget), iris[2])
    assert ran == WITHOUT_GRADIENT


def test_sklearn_adapter_on_a_pipeline_over_a_data_frame_passes(
    iris: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    X, y, probe = iris
    columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    model.fit(pd.DataFrame(X, columns=columns), y)
    frame = pd.DataFrame(probe, columns=columns)
    ran = check_adapter(lambda budget: SklearnAdapter(model, budget=budget), frame, probe[:, 0] * 0)
    assert ran == ALL_CHECKS


def test_recording_model_passes(
    iris: tuple[np.ndarray, np.ndarray, np.ndarray], logistic: LogisticRegression
) -> None:
    assert check_adapter(lambda budget: RecordingModel(logistic, budget), iris[2])


@pytest.mark.parametrize("mode", ["probabilities", "top1", "label"])
def test_hardened_model_passes_in_modes_whose_rows_sum_to_one(
    iris: tuple[np.ndarray, np.ndarray, np.ndarray], logistic: LogisticRegression, mode: Any
) -> None:
    def factory(budget: int | None) -> ModelAdapter:
        return HardenedModel(SklearnAdapter(logistic, budget), OutputHardening(mode=mode))

    assert check_adapter(factory, iris[2]) == WITHOUT_GRADIENT


def test_rounded_outputs_break_the_sum_to_one_contract_on_purpose(
    iris: tuple[np.ndarray, np.ndarray, np.ndarray], logistic: LogisticRegression
) -> None:
    def factory(budget: int | None) -> ModelAdapter:
        hardening = OutputHardening(mode="rounded", decimals=2)
        return HardenedModel(SklearnAdapter(logistic, budget), hardening)

    unsure = iris[0][50:62]  # versicolor rows, whose rounded probabilities miss 1 by 0.01
    with pytest.raises(AssertionError, match=r"check_adapter: predict_proba: row .* sums to"):
        check_adapter(factory, unsure)


def test_torch_adapter_on_a_tiny_mlp_passes(
    iris: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    torch = pytest.importorskip("torch")
    from mlwarden.models import TorchAdapter

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    ran = check_adapter(lambda budget: TorchAdapter(module, [0, 1, 2], budget), iris[2])
    assert ran == ALL_CHECKS


def test_onnx_adapter_passes(
    iris: tuple[np.ndarray, np.ndarray, np.ndarray], logistic: LogisticRegression
) -> None:
    pytest.importorskip("onnxruntime")
    skl2onnx = pytest.importorskip("skl2onnx")
    from mlwarden.models import OnnxAdapter

    probe = iris[2].astype(np.float32)
    onnx_model = skl2onnx.to_onnx(logistic, probe[:1]).SerializeToString()
    ran = check_adapter(lambda budget: OnnxAdapter(onnx_model, budget=budget), probe)
    assert ran == WITHOUT_GRADIENT


class Broken(MeteredModel):
    """An adapter over a logistic model that breaks one promise, named by ``flaw``."""

    def __init__(self, model: Any, flaw: str, budget: int | None = None) -> None:
        super().__init__(budget)
        self.inner, self.flaw = SklearnAdapter(model), flaw

    @property
    def classes_(self) -> np.ndarray:
        return self.inner.classes_

    def predict_proba(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.flaw == "counts_twice":
            self._spend(2 * len(X))
        elif self.flaw == "ignores_budget":
            self._queries += len(X)
        else:
            self._spend(len(X))
        if self.flaw == "pads_narrow_rows" and X.shape[1] < 4:
            X = np.pad(X, ((0, 0), (0, 4 - X.shape[1])))
        if self.flaw == "builtin_error" and X.shape[1] != 4:
            raise ValueError("bad input")
        if self.flaw == "vague_error" and X.shape[1] != 4:
            raise DataError("bad input")
        proba = self.inner.predict_proba(X)
        if self.flaw == "unnormalised":
            return proba * 2
        if self.flaw == "noisy":
            noisy = proba + np.random.default_rng().uniform(0, 1e-3, proba.shape)
            return np.asarray(noisy / noisy.sum(axis=1, keepdims=True))
        return proba


@pytest.mark.parametrize(
    ("flaw", "check"),
    [
        ("counts_twice", "query_counting"),
        ("ignores_budget", "budget"),
        ("unnormalised", "predict_proba"),
        ("noisy", "deterministic"),
        ("pads_narrow_rows", "wrong_width"),
        ("builtin_error", "wrong_width"),
        ("vague_error", "wrong_width"),
    ],
)
def test_a_broken_adapter_fails_the_check_it_breaks(
    iris: tuple[np.ndarray, np.ndarray, np.ndarray],
    logistic: LogisticRegression,
    flaw: str,
    check: str,
) -> None:
    with pytest.raises(AssertionError, match=f"check_adapter: {check}:"):
        check_adapter(lambda budget: Broken(logistic, flaw, budget), iris[2])


def test_the_factory_must_build_an_adapter_and_inputs_must_be_rows(
    iris: tuple[np.ndarray, np.ndarray, np.ndarray], logistic: LogisticRegression
) -> None:
    with pytest.raises(AssertionError, match="the factory returned LogisticRegression"):
        check_adapter(lambda budget: logistic, iris[2])
    with pytest.raises(AssertionError, match="check_adapter: inputs:"):
        check_adapter(lambda budget: SklearnAdapter(logistic, budget), iris[2][:1])
