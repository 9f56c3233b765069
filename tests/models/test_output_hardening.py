"""Output hardening: each mode returns what it promises, and no more (Tramèr et al. 2016, §8)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression

from mlwarden.errors import QueryBudgetExceeded
from mlwarden.models._adapter import ModelAdapter, SklearnAdapter
from mlwarden.models._output_hardening import HardenedModel, OutputHardening, OutputMode

MODES: tuple[OutputMode, ...] = ("probabilities", "rounded", "top1", "label")
_RNG = np.random.default_rng(0)
X3 = _RNG.normal(size=(300, 4))
Y3 = np.array(["a", "b", "c"])[np.argmax(X3[:, :3] + 0.3 * _RNG.normal(size=(300, 3)), axis=1)]
LR3 = LogisticRegression(max_iter=2000).fit(X3, Y3)


def _hardened(mode: OutputMode, decimals: int = 2, budget: int | None = None) -> HardenedModel:
    return HardenedModel(
        SklearnAdapter(LR3, budget=budget), OutputHardening(mode=mode, decimals=decimals)
    )


def test_is_a_model_adapter_with_the_wrapped_classes() -> None:
    for mode in MODES:
        model = _hardened(mode)
        assert isinstance(model, ModelAdapter)
        assert list(model.classes_) == ["a", "b", "c"]
        assert model.mode == mode


def test_probabilities_are_unchanged() -> None:
    model = _hardened("probabilities")
    np.testing.assert_array_equal(model.predict_proba(X3), LR3.predict_proba(X3))
    outputs = model.outputs(X3[:5])
    np.testing.assert_array_equal([out.probabilities for out in outputs], LR3.predict_proba(X3[:5]))
    assert all(out.confidence is None for out in outputs)


@pytest.mark.parametrize("decimals", [0, 1, 2, 3])
def test_rounded_values_have_at_most_the_decimals(decimals: int) -> None:
    model = _hardened("rounded", decimals)
    proba = model.predict_proba(X3)
    scaled = proba * 10**decimals
    np.testing.assert_allclose(scaled, np.round(scaled), atol=1e-9)
    assert np.abs(proba - LR3.predict_proba(X3)).max() <= 0.5 * 10**-decimals + 1e-12
    assert len(np.unique(proba)) <= 10**decimals + 1
    for out, row in zip(model.outputs(X3[:20]), proba[:20], strict=True):
        assert out.probabilities == row.tolist()
        assert out.confidence is None


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=2, max_size=5),
    st.integers(0, 6),
)
def test_rounding_holds_for_any_probabilities(weights: list[float], decimals: int) -> None:
    total = sum(weights)
    proba = (
        np.array([weights]) / total if total > 0 else np.full((1, len(weights)), 1 / len(weights))
    )

    class Fixed:
        classes_ = np.arange(len(weights))
        queries = 0

        def predict_proba(self, X: object) -> np.ndarray:
            return proba

        def predict(self, X: object) -> np.ndarray:
            return np.argmax(proba, axis=1)

    rounded = HardenedModel(Fixed(), OutputHardening(mode="rounded", decimals=decimals))
    values = rounded.predict_proba(None) * 10**decimals
    np.testing.assert_allclose(values, np.round(values), atol=1e-6)
    top1 = HardenedModel(Fixed(), OutputHardening(mode="top1", decimals=decimals))
    row = top1.predict_proba(None)[0]
    assert len({round(v, 12) for i, v in enumerate(row) if i != np.argmax(proba[0])}) <= 1


def test_top1_reveals_one_rounded_confidence() -> None:
    model = _hardened("top1", decimals=2)
    truth = LR3.predict_proba(X3)
    proba = model.predict_proba(X3)
    top = np.argmax(truth, axis=1)
    rows = np.arange(len(X3))
    np.testing.assert_allclose(proba[rows, top], np.round(truth[rows, top], 2))
    others = np.delete(proba, top + 3 * rows).reshape(len(X3), 2)
    # The other classes share the remainder evenly: nothing about them is revealed.
    np.testing.assert_allclose(others[:, 0], others[:, 1])
    np.testing.assert_allclose(others[:, 0], (1 - proba[rows, top]) / 2)
    outputs = model.outputs(X3[:10])
    for out, label, conf in zip(outputs, LR3.predict(X3[:10]), proba[:10].max(axis=1), strict=True):
        assert out.probabilities is None
        assert out.label == label
        assert out.confidence == pytest.approx(conf)


def test_label_rows_are_one_hot() -> None:
    model = _hardened("label")
    proba = model.predict_proba(X3)
    assert set(np.unique(proba)) == {0.0, 1.0}
    np.testing.assert_array_equal(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.classes_[proba.argmax(axis=1)], LR3.predict(X3))
    for out in model.outputs(X3[:10]):
        assert out.probabilities is None and out.confidence is None
        assert out.label in {"a", "b", "c"}


@pytest.mark.parametrize("mode", MODES)
def test_predict_is_unchanged_and_queries_are_counted(mode: OutputMode) -> None:
    model = _hardened(mode)
    np.testing.assert_array_equal(model.predict(X3), LR3.predict(X3))
    assert model.queries == len(X3)
    model.predict_proba(X3[:7])
    model.outputs(X3[:5])
    assert model.queries == model.model.queries == len(X3) + 12


@pytest.mark.parametrize("mode", MODES)
def test_budget_is_enforced_through_the_wrapper(mode: OutputMode) -> None:
    model = _hardened(mode, budget=10)
    assert model.budget == 10
    model.predict_proba(X3[:8])
    with pytest.raises(QueryBudgetExceeded):
        model.outputs(X3[:5])
    with pytest.raises(QueryBudgetExceeded):
        model.predict(X3[:3])
    assert model.queries == 8
    model.predict(X3[:2])
    assert model.queries == 10


def test_hardening_options_are_validated() -> None:
    assert OutputHardening().mode == "probabilities"
    assert OutputHardening().decimals == 2
    with pytest.raises(ValidationError):
        OutputHardening(mode="scores")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        OutputHardening(mode="rounded", decimals=-1)
