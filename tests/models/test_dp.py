"""DP-SGD training (Opacus): the epsilon spent, determinism, numpy inference, persistence."""

from __future__ import annotations

import sys
from functools import cache
from typing import Any

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlwarden import datasets
from mlwarden.errors import ModelError
from mlwarden.models._dp import (
    DP_TRUSTED_TYPES,
    DPSGDClassifier,
    claimed_delta,
    claimed_epsilon,
    default_delta,
)
from mlwarden.models._persist import TRUSTED_TYPES, dumps_model, loads_model, untrusted_types


@cache
def adult() -> tuple[np.ndarray, np.ndarray]:
    """Adult one-hot encoded and standardised (as mlwarden's preprocessing would), labels."""
    data = datasets.load("adult")
    X = data.X.iloc[:12000]
    numeric = list(X.select_dtypes("number").columns)
    categorical = [c for c in X.columns if c not in numeric]
    prepare = ColumnTransformer(
        [
            ("num", StandardScaler(), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ]
    )
    y = (data.y.iloc[:12000] == data.positive).to_numpy().astype(int)
    return prepare.fit_transform(X).astype(np.float32), y


def toy(n: int = 800, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    return X, np.where(X[:, 0] + 0.5 * X[:, 1] > 0, "yes", "no")


# --------------------------------------------------------------------------------------------
# No Opacus needed


def test_default_delta_is_a_power_of_ten_below_one_over_n() -> None:
    assert default_delta(1000) == 1e-5
    assert default_delta(30000) == 1e-5
    assert default_delta(100000) == pytest.approx(1e-6)
    assert default_delta(2_000_000) == pytest.approx(1e-7)
    for n in (1, 99, 10**5, 123456):
        assert default_delta(n) < 1 / n


def test_bad_parameters_are_refused() -> None:
    X, y = toy(20)
    for params, match in [
        ({"epsilon": 0.0}, "epsilon must be a positive"),
        ({"epsilon": 1.0, "noise_multiplier": 1.0}, "not both"),
        ({"epsilon": None, "noise_multiplier": -1.0}, "noise_multiplier"),
        ({"delta": 1.0}, "delta"),
        ({"epochs": 0}, "epochs"),
        ({"hidden": -1}, "hidden"),
        ({"max_grad_norm": float("inf")}, "max_grad_norm"),
    ]:
        with pytest.raises(ValueError, match=match):
            DPSGDClassifier(**params).fit(X, y)


def test_missing_opacus_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opacus", None)
    X, y = toy(20)
    with pytest.raises(ModelError, match=r"pip install 'mlwarden\[dp\]'"):
        DPSGDClassifier().fit(X, y)


def test_claimed_epsilon_is_none_for_non_dp_and_unfitted_models() -> None:
    assert claimed_epsilon(LogisticRegression()) is None
    assert claimed_epsilon(make_pipeline(StandardScaler(), LogisticRegression())) is None
    assert claimed_epsilon(DPSGDClassifier(epsilon=1.0)) is None  # nothing spent yet
    assert claimed_delta(LogisticRegression()) is None


# --------------------------------------------------------------------------------------------
# Training with Opacus


def test_fit_spends_at_most_the_target_and_is_reproducible() -> None:
    pytest.importorskip("opacus")
    X, y = toy()
    model = DPSGDClassifier(epsilon=2.0, epochs=3, batch_size=16, random_state=0).fit(X, y)
    assert 0 < model.epsilon_ <= 2.0  # type: ignore[operator]
    assert model.epsilon_ > 1.5  # the noise was tuned to the target, not far below it
    assert model.delta_ == default_delta(len(X))
    assert model.noise_multiplier_ > 0
    assert list(model.classes_) == ["no", "yes"]
    pipe = make_pipeline(StandardScaler(), model)
    assert claimed_epsilon(pipe) == model.epsilon_
    assert claimed_epsilon(make_pipeline(pipe)) == model.epsilon_  # nested
    assert claimed_delta(pipe) == model.delta_
    again = DPSGDClassifier(epsilon=2.0, epochs=3, batch_size=16, random_state=0).fit(X, y)
    weights, repeated = model.coefs_ + model.intercepts_, again.coefs_ + again.intercepts_
    for a, b in zip(weights, repeated, strict=True):
        np.testing.assert_array_equal(a, b)
    other = DPSGDClassifier(epsilon=2.0, epochs=3, batch_size=16, random_state=1).fit(X, y)
    assert not np.array_equal(other.coefs_[0], model.coefs_[0])  # the seed matters
    assert all(isinstance(w, np.ndarray) for w in model.coefs_ + model.intercepts_)


def test_global_torch_rng_is_left_alone() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("opacus")
    X, y = toy(100)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    DPSGDClassifier(epochs=1, random_state=0).fit(X, y)
    torch.testing.assert_close(torch.rand(3), expected)


def _torch_forward(model: DPSGDClassifier, X: np.ndarray) -> np.ndarray:
    torch = pytest.importorskip("torch")
    layers: list[Any] = []
    for i, (w, b) in enumerate(zip(model.coefs_, model.intercepts_, strict=True)):
        linear = torch.nn.Linear(*w.shape)
        linear.weight.data = torch.from_numpy(w.T.copy())
        linear.bias.data = torch.from_numpy(b.copy())
        layers.append(linear)
        if i < len(model.coefs_) - 1:
            layers.append(torch.nn.ReLU())
    with torch.no_grad():
        logits = torch.nn.Sequential(*layers)(torch.from_numpy(X.astype(np.float32)))
        return np.asarray(torch.softmax(logits, dim=1).numpy())


@pytest.mark.parametrize("hidden", [0, 16])
def test_numpy_predict_proba_matches_the_torch_forward_pass(hidden: int) -> None:
    pytest.importorskip("opacus")
    X, y = toy()
    model = DPSGDClassifier(
        epsilon=4.0, epochs=2, hidden=hidden, batch_size=16, random_state=0
    ).fit(X, y)
    assert len(model.coefs_) == (2 if hidden else 1)
    proba = model.predict_proba(X[:50])
    np.testing.assert_allclose(proba, _torch_forward(model, X[:50]), atol=1e-5)
    np.testing.assert_array_equal(model.predict(X[:50]), model.classes_[proba.argmax(axis=1)])


def test_non_private_twin_claims_nothing_and_adds_no_noise() -> None:
    pytest.importorskip("opacus")
    X, y = toy()
    twin = DPSGDClassifier(epsilon=None, epochs=3, random_state=0).fit(X, y)
    assert twin.epsilon_ is None and twin.delta_ is None and twin.noise_multiplier_ == 0.0
    assert claimed_epsilon(twin) is None
    # With no noise, the noise seed is irrelevant: the same batches give the same weights.
    zero = DPSGDClassifier(epsilon=None, noise_multiplier=0.0, epochs=3, random_state=0)
    np.testing.assert_array_equal(zero.fit(X, y).coefs_[0], twin.coefs_[0])
    noisy = DPSGDClassifier(epsilon=None, noise_multiplier=1.0, epochs=3, random_state=0)
    noisy.fit(X, y)
    assert noisy.epsilon_ is not None and noisy.epsilon_ > 0
    assert not np.array_equal(noisy.coefs_[0], twin.coefs_[0])


def test_pipeline_persists_through_skops_and_predicts_identically() -> None:
    pytest.importorskip("opacus")
    X, y = toy()
    pipe = make_pipeline(
        StandardScaler(),
        DPSGDClassifier(epsilon=1.0, epochs=2, hidden=8, batch_size=16, random_state=0),
    ).fit(X, y)
    data = dumps_model(pipe)
    assert DP_TRUSTED_TYPES <= TRUSTED_TYPES  # the registry loads DP models as they are
    assert untrusted_types(data, TRUSTED_TYPES - DP_TRUSTED_TYPES) == sorted(DP_TRUSTED_TYPES)
    assert untrusted_types(data) == []
    loaded = loads_model(data)
    np.testing.assert_array_equal(loaded.predict_proba(X), pipe.predict_proba(X))
    assert claimed_epsilon(loaded) == claimed_epsilon(pipe)
    assert dumps_model(pipe) == data  # reproducible bytes, hence a stable hash


def test_reasonable_accuracy_on_adult_at_epsilon_one() -> None:
    pytest.importorskip("opacus")
    X, y = adult()
    model = DPSGDClassifier(epsilon=1.0, epochs=3, random_state=0).fit(X[:8000], y[:8000])
    accuracy = float(np.mean(model.predict(X[8000:]) == y[8000:]))
    majority = max(np.mean(y[8000:]), 1 - np.mean(y[8000:]))
    assert accuracy > 0.78 and accuracy > majority + 0.02, accuracy
    assert isinstance(Pipeline([("m", model)]).predict(X[:2]), np.ndarray)
