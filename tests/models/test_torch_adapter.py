"""TorchAdapter: query counting, budget, probabilities, gradients; the Digits demo model."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mlwarden.errors import DataError, ModelError, QueryBudgetExceeded  # noqa: E402
from mlwarden.models._adapter import HasGradient, ModelAdapter  # noqa: E402
from mlwarden.models._torch import (  # noqa: E402
    TorchAdapter,
    load_digits_split,
    require_torch,
    train_digits_model,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core box, two threads contend and run far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def linear(weight: list[list[float]], bias: list[float]) -> torch.nn.Module:
    """A float64 linear layer with the given weights."""
    layer = torch.nn.Linear(len(weight[0]), len(weight), dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float64))
        layer.bias.copy_(torch.tensor(bias, dtype=torch.float64))
    return layer


@pytest.fixture
def small() -> TorchAdapter:
    """Three features, three classes."""
    module = linear([[1.0, -2.0, 0.5], [0.0, 1.0, 1.0], [-1.0, 0.5, -0.5]], [0.1, 0.0, -0.2])
    return TorchAdapter(module, classes=["a", "b", "c"])


def test_satisfies_the_protocols(small: TorchAdapter) -> None:
    assert isinstance(small, ModelAdapter)
    assert isinstance(small, HasGradient)
    assert list(small.classes_) == ["a", "b", "c"]


def test_counts_every_row_and_refuses_a_call_beyond_the_budget() -> None:
    module = linear([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    adapter = TorchAdapter(module, classes=[0, 1], budget=10, batch_size=2)
    X = np.array([[0.1, 0.2], [0.3, 0.1], [0.5, 0.5], [0.9, 0.0]])
    adapter.predict_proba(X)
    assert adapter.queries == 4
    adapter.loss_gradient(X[:3], [0, 1, 0])
    assert adapter.queries == 7
    with torch.no_grad():
        adapter.logits(adapter.as_tensor(X[:2]))
    assert adapter.queries == 9
    assert adapter.remaining_queries == 1
    with pytest.raises(QueryBudgetExceeded):
        adapter.predict(X[:2])
    with pytest.raises(QueryBudgetExceeded):
        adapter.loss_gradient(X[:2], [0, 1])
    with pytest.raises(QueryBudgetExceeded):
        adapter.logits(adapter.as_tensor(X[:2]))
    assert adapter.queries == 9  # refused calls cost nothing
    adapter.predict(X[:1])
    assert adapter.queries == 10
    with pytest.raises(QueryBudgetExceeded):
        adapter.predict(X[:1])


def test_probabilities_sum_to_one_and_batching_changes_nothing(small: TorchAdapter) -> None:
    X = np.random.default_rng(0).normal(size=(11, 3))
    proba = small.predict_proba(X)
    assert proba.shape == (11, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    batched = TorchAdapter(small.module, classes=["a", "b", "c"], batch_size=4)
    np.testing.assert_allclose(batched.predict_proba(X), proba, atol=1e-12)
    assert list(small.predict(X)) == list(np.array(["a", "b", "c"])[proba.argmax(axis=1)])


def test_loss_gradient_matches_finite_differences(small: TorchAdapter) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(5, 3))
    y = np.array(["a", "c", "b", "b", "a"])
    W = small.module.weight.detach().numpy()
    b = small.module.bias.detach().numpy()
    index = small.class_index(y)

    def losses(points: np.ndarray) -> np.ndarray:
        z = points @ W.T + b
        z = z - z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -log_p[np.arange(len(points)), index]

    h = 1e-6
    numeric = np.zeros_like(X)
    for j in range(X.shape[1]):
        step = np.zeros_like(X)
        step[:, j] = h
        numeric[:, j] = (losses(X + step) - losses(X - step)) / (2 * h)
    grad = small.loss_gradient(X, y)
    assert grad.shape == X.shape
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    assert small.queries == len(X)


def test_logits_keep_autograd_and_the_module_runs_in_eval_mode() -> None:
    module = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2)
    )
    module.train()
    adapter = TorchAdapter(module, classes=[0, 1])
    assert not adapter.module.training
    X = np.random.default_rng(2).random((6, 4))
    np.testing.assert_array_equal(adapter.predict_proba(X), adapter.predict_proba(X))
    x = adapter.as_tensor(X).requires_grad_(True)
    adapter.logits(x).sum().backward()
    assert x.grad is not None
    assert adapter.queries == 18


def test_bad_labels_shapes_and_modules_are_refused(small: TorchAdapter) -> None:
    with pytest.raises(DataError, match="not among"):
        small.loss_gradient(np.zeros((2, 3)), ["a", "z"])
    with pytest.raises(DataError, match="labels"):
        small.loss_gradient(np.zeros((2, 3)), ["a"])
    with pytest.raises(ModelError, match="expected"):
        TorchAdapter(small.module, classes=["a", "b"]).predict(np.zeros((1, 3)))
    with pytest.raises(ModelError):
        TorchAdapter(object(), classes=[0, 1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="budget"):
        TorchAdapter(small.module, classes=["a", "b", "c"], budget=-1)


def test_missing_torch_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ModelError, match=r"pip install 'mlwarden\[torch\]'"):
        require_torch()
    with pytest.raises(ModelError, match="mlwarden"):
        train_digits_model()


def test_digits_mlp_is_accurate_and_deterministic() -> None:
    split = load_digits_split()
    assert split.X_train.min() >= 0 and split.X_train.max() <= 1
    state = torch.get_rng_state()
    first = train_digits_model(split.X_train, split.y_train, kind="mlp", seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # the global random state is left alone
    second = train_digits_model(split.X_train, split.y_train, kind="mlp", seed=0)
    for p, q in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(p, q)
    accuracy = (TorchAdapter(first, range(10)).predict(split.X_test) == split.y_test).mean()
    assert accuracy > 0.95


def test_digits_cnn_trains_on_flat_pixels() -> None:
    split = load_digits_split()
    module = train_digits_model(split.X_train[:300], split.y_train[:300], kind="cnn", epochs=2)
    proba = TorchAdapter(module, range(10)).predict_proba(split.X_test[:5])
    assert proba.shape == (5, 10)
    with pytest.raises(ValueError, match="kind"):
        train_digits_model(split.X_train, split.y_train, kind="rnn")  # type: ignore[arg-type]
