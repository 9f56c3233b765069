"""FGSM and PGD: closed form on a linear model, strength, constraints, queries, budget, seed."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from mlwarden.attacks._gradient import GradientAttackResult, fgsm, pgd  # noqa: E402
from mlwarden.attacks._robust_accuracy import RobustnessCurve, robust_accuracy  # noqa: E402
from mlwarden.errors import DataError  # noqa: E402
from mlwarden.models._torch import (  # noqa: E402
    TorchAdapter,
    load_digits_split,
    train_digits_model,
)

N_POINTS = 150


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core box, two threads contend and run far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits() -> tuple[Any, np.ndarray, np.ndarray]:
    """The Digits MLP and its first held-out points (pixels in [0, 1])."""
    split = load_digits_split()
    module = train_digits_model(split.X_train, split.y_train, kind="mlp", seed=0)
    return module, split.X_test[:N_POINTS], split.y_test[:N_POINTS]


def adapter(module: Any, budget: int | None = None) -> TorchAdapter:
    return TorchAdapter(module, classes=range(10), budget=budget)


def two_class_linear(w: np.ndarray, b: float) -> TorchAdapter:
    """Logits (0, w.x + b) in float64: class 1 wins where w.x + b > 0."""
    layer = torch.nn.Linear(len(w), 2, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(np.stack([np.zeros_like(w), w])))
        layer.bias.copy_(torch.tensor([0.0, b]))
    return TorchAdapter(layer, classes=[0, 1])


@pytest.mark.parametrize(("norm", "dual"), [("linf", 1), ("l2", 2)])
def test_fgsm_flips_exactly_the_points_within_reach_on_a_linear_model(norm: str, dual: int) -> None:
    # One step of size eps moves the margin y*(w.x + b) by eps * ||w||_1 (L-inf) or
    # eps * ||w||_2 (L2): a point flips iff its margin is below that.
    rng = np.random.default_rng(0)
    w = np.array([0.8, -0.5, 0.3, 0.0, 1.2])
    b = 0.1
    X = rng.normal(size=(400, 5))
    score = X @ w + b
    y = (score > 0).astype(int)
    margin = np.abs(score)
    eps = 0.4
    reach = eps * np.linalg.norm(w, ord=dual)
    clear = np.abs(margin - reach) > 1e-9
    X, y, margin = X[clear], y[clear], margin[clear]
    model = two_class_linear(w, b)

    result = fgsm(model, X, y, eps=eps, norm=norm, clip=None)  # type: ignore[arg-type]
    assert result.queries == 2 * len(X) == model.queries

    assert result.adversarial is not None
    flipped = model.predict(result.adversarial) != y
    expected = margin < reach
    assert 0 < expected.sum() < len(y)
    np.testing.assert_array_equal(flipped, expected)
    assert result.clean_accuracy == 1.0
    assert result.success_rate == pytest.approx(expected.mean())
    assert result.adversarial_accuracy == pytest.approx(1 - expected.mean())
    np.testing.assert_allclose(result.perturbation, eps, rtol=1e-12)


def test_pgd_is_at_least_as_strong_as_fgsm_on_digits(digits: Any) -> None:
    module, X, y = digits
    for eps in (0.05, 0.1):
        one_step = fgsm(adapter(module), X, y, eps=eps)
        iterated = pgd(adapter(module), X, y, eps=eps, steps=20, step_size=eps / 4)
        assert iterated.clean_accuracy == one_step.clean_accuracy > 0.95
        assert iterated.adversarial_accuracy <= one_step.adversarial_accuracy
        assert iterated.success_rate >= one_step.success_rate
    assert iterated.success_rate > 0.3  # eps 0.1 breaks a good share of an undefended MLP


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_perturbations_stay_in_the_ball_and_the_box(digits: Any, norm: str, attack: str) -> None:
    module, X, y = digits
    eps = 0.15 if norm == "linf" else 1.0
    if attack == "fgsm":
        result = fgsm(adapter(module), X, y, eps=eps, norm=norm)  # type: ignore[arg-type]
    else:
        result = pgd(
            adapter(module), X, y, eps=eps, norm=norm, steps=10, restarts=2, early_stop=False
        )  # type: ignore[arg-type]
    assert isinstance(result, GradientAttackResult)
    adv = result.adversarial
    assert adv is not None and adv.shape == X.shape
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    delta = adv.astype(np.float64) - X.astype(np.float64)
    norms = np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert norms.max() <= eps + 1e-6
    assert max(result.perturbation) <= eps + 1e-6
    np.testing.assert_allclose(result.perturbation, norms, atol=1e-6)
    assert result.success_rate > 0
    assert (
        result.examples
        and result.examples[0]["label"] != result.examples[0]["adversarial_prediction"]
    )
    result.model_dump_json()  # serialisable


def test_early_stop_spends_fewer_queries_for_the_same_success(digits: Any) -> None:
    module, X, y = digits
    steps = 10
    full = adapter(module)
    without = pgd(full, X, y, eps=0.1, steps=steps, early_stop=False)
    n_correct = round(without.clean_accuracy * len(X))
    assert without.queries == full.queries == len(X) + n_correct * (steps + 1)
    with_stop = pgd(adapter(module), X, y, eps=0.1, steps=steps, early_stop=True)
    assert with_stop.queries < without.queries
    # Same random start and per-point trajectories, but stopping at the first wrong iterate
    # keeps successes that the final iterate may lose.
    assert with_stop.success_rate >= without.success_rate


def test_restarts_only_add_successes(digits: Any) -> None:
    module, X, y = digits
    once = pgd(adapter(module), X, y, eps=0.05, steps=5, restarts=1, seed=1)
    thrice = pgd(adapter(module), X, y, eps=0.05, steps=5, restarts=3, seed=1)
    assert thrice.success_rate >= once.success_rate
    assert thrice.queries > once.queries


def test_same_seed_same_result_and_another_seed_another_start(digits: Any) -> None:
    module, X, y = digits
    a = pgd(adapter(module), X, y, eps=0.05, steps=5, seed=7)
    b = pgd(adapter(module), X, y, eps=0.05, steps=5, seed=7)
    c = pgd(adapter(module), X, y, eps=0.05, steps=5, seed=8)
    assert a.adversarial is not None and b.adversarial is not None and c.adversarial is not None
    np.testing.assert_array_equal(a.adversarial, b.adversarial)
    assert a.queries == b.queries and a.perturbation == b.perturbation
    assert not np.array_equal(a.adversarial, c.adversarial)


def test_robust_accuracy_does_not_increase_with_eps(digits: Any) -> None:
    module, X, y = digits
    model = adapter(module)
    curve = robust_accuracy(model, X, y, [0.2, 0.0, 0.05, 0.1], steps=10)
    assert isinstance(curve, RobustnessCurve)
    assert curve.epsilons == [0.0, 0.05, 0.1, 0.2]
    acc = curve.accuracies
    assert all(later <= earlier for earlier, later in itertools.pairwise(acc))
    assert acc[0] > 0.95 and acc[-1] < acc[0]
    assert curve.queries == model.queries == sum(p.queries for p in curve.points)
    assert all(p.complete for p in curve.points) and not curve.budget_exhausted
    curve.model_dump_json()


def test_a_budget_cuts_the_curve_short_without_raising(digits: Any) -> None:
    module, X, y = digits
    curve = robust_accuracy(adapter(module), X, y, [0.0, 0.05, 0.1], steps=10, budget=800)
    assert curve.budget_exhausted and curve.queries <= 800
    assert curve.points[0].eps == 0.0 and curve.points[0].complete
    assert not curve.points[-1].complete


def test_the_adapter_budget_also_holds(digits: Any) -> None:
    module, X, y = digits
    model = adapter(module, budget=700)
    result = pgd(model, X, y, eps=0.1, steps=40)
    assert result.budget_exhausted
    assert model.queries <= 700 and result.queries == model.queries
    assert result.n_evaluated == len(X)
    with torch.no_grad():  # a caller's no_grad does not break the gradient
        assert pgd(adapter(module), X[:20], y[:20], eps=0.2, steps=5).success_rate > 0


def tiny_model() -> TorchAdapter:
    torch.manual_seed(0)
    return TorchAdapter(torch.nn.Linear(4, 3), classes=[0, 1, 2])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 12),
    budget=st.integers(0, 120),
    own_budget=st.booleans(),
    attack=st.sampled_from(["fgsm", "pgd"]),
    norm=st.sampled_from(["linf", "l2"]),
    steps=st.integers(0, 6),
    restarts=st.integers(1, 3),
    early_stop=st.booleans(),
    batch_size=st.integers(1, 5),
    seed=st.integers(0, 3),
)
def test_the_budget_is_never_exceeded(
    n: int,
    budget: int,
    own_budget: bool,
    attack: str,
    norm: str,
    steps: int,
    restarts: int,
    early_stop: bool,
    batch_size: int,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    X = rng.random((n, 4))
    y = rng.integers(0, 3, n)
    model = tiny_model()
    if not own_budget:
        model.budget = budget
    limit = budget if own_budget else None
    if attack == "fgsm":
        result = fgsm(model, X, y, eps=0.3, norm=norm, budget=limit, batch_size=batch_size)  # type: ignore[arg-type]
    else:
        result = pgd(
            model, X, y, eps=0.3, norm=norm, steps=steps, restarts=restarts,
            early_stop=early_stop, budget=limit, batch_size=batch_size, seed=seed,
        )  # type: ignore[arg-type]  # fmt: skip
    assert result.queries == model.queries <= budget
    assert result.n_evaluated == min(n, budget)
    assert 0 <= result.adversarial_accuracy <= result.clean_accuracy <= 1
    assert len(result.perturbation) == n and max(result.perturbation) <= 0.3 + 1e-6


def test_bad_arguments_are_refused(digits: Any) -> None:
    module, X, y = digits
    with pytest.raises(TypeError, match="TorchAdapter"):
        pgd(module, X, y, eps=0.1)
    with pytest.raises(DataError, match="clip box"):
        pgd(adapter(module), X * 16, y, eps=0.1)
    with pytest.raises(ValueError, match="norm"):
        fgsm(adapter(module), X, y, eps=0.1, norm="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps"):
        fgsm(adapter(module), X, y, eps=-0.1)
    with pytest.raises(DataError, match="labels"):
        pgd(adapter(module), X, y[:-1], eps=0.1)
