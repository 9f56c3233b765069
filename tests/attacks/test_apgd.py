"""APGD and AutoAttack: the published schedule and step rule, the DLR loss, strength, queries."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from mlwarden.attacks import (  # noqa: E402
    apgd,
    apgd_checkpoints,
    autoattack,
    dlr_loss,
    pgd,
    robust_accuracy,
    square,
)
from mlwarden.attacks._apgd import StepController  # noqa: E402
from mlwarden.errors import ParameterError  # noqa: E402
from mlwarden.models import TorchAdapter  # noqa: E402
from tests.attacks.test_gradient import adapter, digits, one_thread  # noqa: E402, F401

N_POINTS = 60  # of the shared fixture's points: enough to compare, fast on one core


@pytest.fixture(scope="module")
def points(digits: Any) -> tuple[Any, np.ndarray, np.ndarray]:  # noqa: F811  (the fixture)
    """The undefended Digits MLP and its first held-out points (pixels in [0, 1])."""
    module, X, y = digits
    return module, X[:N_POINTS], y[:N_POINTS]


def test_checkpoints_follow_the_paper() -> None:
    # p = 0, .22, .41, .57, .70, .80, .87, .93, .99 (then 1.05 > 1); w_j = ceil(p_j * N).
    assert apgd_checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(1000) == [0, 220, 410, 570, 700, 800, 870, 930, 990]
    assert apgd_checkpoints(10) == [0, 3, 5, 6, 7, 8, 9, 10, 10]
    with pytest.raises(ParameterError, match="n_iter"):
        apgd_checkpoints(0)


def run_trace(traces: list[list[float]], eta: float = 1.0) -> tuple[StepController, list[Any]]:
    """Feed per-point loss traces f(x^(0)), f(x^(1)), ... to the rule; the rows halved per k."""
    losses = torch.tensor(traces, dtype=torch.float64).T
    rule = StepController(losses[0], eta, n_iter=100)
    halved = [rule.observe(k, losses[k])[1].tolist() for k in range(1, len(losses))]
    return rule, halved


def test_condition_1_halves_the_step_when_too_few_steps_raised_the_loss() -> None:
    # By the first checkpoint (w_1 = 22), 17 of 22 steps raised the loss for row 0 (17 >= 0.75
    # * 22 = 16.5: kept) and 16 for row 1 (halved). Both reach a new best, so condition 2 is off.
    up17 = [0.0] + [float(i) for i in range(1, 18)] + [16.0, 15.0, 14.0, 13.0, 12.0]
    up16 = [0.0] + [float(i) for i in range(1, 17)] + [15.0, 14.0, 13.0, 12.0, 11.0, 10.0]
    rule, halved = run_trace([up17, up16])
    assert all(h == [False, False] for h in halved[:21])
    assert halved[21] == [False, True]
    assert rule.eta.tolist() == [1.0, 0.5]
    # Row 1 restarts from its best point: the next step compares against the best loss, 16.
    assert rule.prev.tolist() == [12.0, 16.0]


def test_condition_2_halves_the_step_when_neither_step_nor_best_changed() -> None:
    # Both rows climb 22 of 22 steps to the first checkpoint (kept). Between 22 and 41 row 0
    # drops once and then rises 15 of 19 steps without passing its best: condition 1 holds
    # off (15 >= 14.25) but the best loss did not move and the step was not halved at 22, so
    # condition 2 halves it. Row 1 keeps climbing past its best and keeps its step.
    climb = [float(i) for i in range(23)]
    row0 = climb + [0.0] + [0.5 + 0.1 * i for i in range(15)] + [0.0, 0.0, 0.0]
    row1 = climb + [22.0 + i for i in range(1, 20)]
    rule, halved = run_trace([row0, row1])
    assert halved[21] == [False, False]  # k = 22
    assert all(h == [False, False] for h in halved[22:40])
    assert halved[40] == [True, False]  # k = 41
    assert rule.eta.tolist() == [0.5, 1.0]
    assert rule.best.tolist() == [22.0, 41.0]


def test_condition_2_does_not_fire_right_after_a_halving() -> None:
    # A flat start: no increase by k = 22, so condition 1 halves the step there. Between 22
    # and 41 the loss rises 15 of 19 steps but stays below the best (0): condition 1 holds
    # off, and condition 2 needs a step not halved at the last checkpoint, so the step stays.
    trace = [0.0] * 23 + [-1.0] + [-0.9 + 0.05 * i for i in range(15)] + [-1.0] * 3
    rule, halved = run_trace([trace])
    assert [k + 1 for k, h in enumerate(halved) if h[0]] == [22]
    assert rule.eta.tolist() == [0.5]


def test_dlr_loss_on_a_hand_example() -> None:
    # Logits (1, 4, 2, 3, 0), true class 1, target 3: sorted 4, 3, 2, 1, 0;
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) = -(4 - 3) / (4 - 1.5) = -0.4.
    z = torch.tensor([[1.0, 4.0, 2.0, 3.0, 0.0], [5.0, 1.0, 0.0, 2.0, 3.0]], dtype=torch.float64)
    y, t = torch.tensor([1, 1]), torch.tensor([3, 0])
    # Row 2: true class 1 (z = 1) misclassified, target 0 (z = 5): -(1 - 5) / (5 - 1.5) = 8/7.
    np.testing.assert_allclose(dlr_loss(z, y, t).numpy(), [-0.4, 4 / 3.5])
    # Invariant to shifting and (positive) scaling of the logits.
    np.testing.assert_allclose(dlr_loss(3 * z + 7, y, t).numpy(), dlr_loss(z, y, t).numpy())
    with pytest.raises(ParameterError, match="4 classes"):
        dlr_loss(z[:, :3], y, torch.tensor([0, 0]))


def test_autoattack_is_at_least_as_strong_as_pgd_and_apgd_ce(points: Any) -> None:
    module, X, y = points
    by_pgd = pgd(adapter(module), X, y, eps=0.05)
    by_ce = apgd(adapter(module), X, y, eps=0.05, steps=50)
    model = adapter(module)
    by_aa = autoattack(model, X, y, eps=0.05, steps=50, n_target_classes=3, square_queries=300)
    assert by_aa.adversarial_accuracy <= by_pgd.adversarial_accuracy
    assert by_aa.adversarial_accuracy < by_aa.clean_accuracy
    # APGD-CE runs first with the same seed: every point it fools, the ensemble fools too.
    fooled = np.asarray(by_ce.perturbation) > 0
    assert by_ce.adversarial is not None and by_aa.adversarial is not None
    ce_wrong = adapter(module).predict(by_ce.adversarial) != y
    aa_wrong = adapter(module).predict(by_aa.adversarial) != y
    assert np.all(aa_wrong[ce_wrong]) and fooled.any()
    assert list(by_aa.params["fooled_by"]) == ["apgd-ce", "apgd-t", "square"]
    n_correct = round(by_aa.clean_accuracy * len(X))
    assert sum(by_aa.params["fooled_by"].values()) == round(by_aa.success_rate * n_correct)
    assert by_aa.queries == model.queries
    assert max(by_aa.perturbation) <= 0.05 + 1e-6


def test_apgd_l2_stays_in_the_ball_and_costs_at_most_steps_plus_one(points: Any) -> None:
    module, X, y = points
    model = adapter(module)
    result = apgd(model, X, y, eps=1.0, norm="l2", steps=20)
    n_attacked = round(result.clean_accuracy * len(X))
    assert result.queries == model.queries <= len(X) + n_attacked * 21
    assert max(result.perturbation) <= 1.0 + 1e-5 and result.success_rate > 0.3
    targeted = apgd(adapter(module), X, y, eps=1.0, norm="l2", loss="dlr-targeted", steps=20)
    assert targeted.attack == "apgd-t" and targeted.success_rate > 0.3


def test_robust_accuracy_defaults_to_autoattack_and_keeps_pgd(points: Any) -> None:
    module, X, y = points
    aa = robust_accuracy(adapter(module), X, y, [0.0, 0.05], steps=20, square_queries=200)
    by_pgd = robust_accuracy(adapter(module), X, y, [0.0, 0.05], attack="pgd")
    assert aa.attack == "autoattack" and by_pgd.attack == "pgd"
    assert aa.accuracies[0] == by_pgd.accuracies[0]
    assert aa.accuracies[1] <= by_pgd.accuracies[1]
    with pytest.raises(ParameterError, match="attack must be"):
        robust_accuracy(adapter(module), X, y, [0.05], attack="fgsm")  # type: ignore[arg-type]


def tiny_model(classes: int) -> TorchAdapter:
    """A linear model on 4 features: a 2-by-2 one-channel image for Square."""
    torch.manual_seed(0)
    return TorchAdapter(torch.nn.Linear(4, classes), classes=list(range(classes)))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 10),
    budget=st.integers(0, 150),
    attack=st.sampled_from(["apgd-ce", "apgd-t", "square", "autoattack"]),
    norm=st.sampled_from(["linf", "l2"]),
    batch_size=st.integers(1, 4),
    seed=st.integers(0, 3),
)
def test_the_budget_is_never_exceeded(
    n: int, budget: int, attack: str, norm: str, batch_size: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    X, y = rng.random((n, 4)), rng.integers(0, 5, n)
    model = tiny_model(5)
    common: dict[str, Any] = {"eps": 0.3, "budget": budget, "batch_size": batch_size, "seed": seed}
    if attack == "square":
        result = square(model, X, y, n_queries=20, **common)
    elif attack == "autoattack":
        result = autoattack(model, X, y, norm=norm, steps=5, square_queries=20, **common)  # type: ignore[arg-type]
    else:
        loss = "ce" if attack == "apgd-ce" else "dlr-targeted"
        result = apgd(model, X, y, norm=norm, loss=loss, steps=5, **common)  # type: ignore[arg-type]
    assert result.queries == model.queries <= budget
    assert result.n_evaluated == min(n, budget)
    assert 0 <= result.adversarial_accuracy <= result.clean_accuracy <= 1
    assert max(result.perturbation) <= 0.3 + 1e-6


def test_members_that_do_not_apply_are_skipped() -> None:
    rng = np.random.default_rng(0)
    X3, y3 = rng.random((8, 4)), rng.integers(0, 3, 8)
    three = autoattack(tiny_model(3), X3, y3, eps=0.1, steps=3, square_queries=5)
    assert list(three.params["fooled_by"]) == ["apgd-ce", "square"]
    l2 = autoattack(tiny_model(5), X3, y3, eps=0.1, norm="l2", steps=3)
    assert list(l2.params["fooled_by"]) == ["apgd-ce", "apgd-t"]
    flat = TorchAdapter(torch.nn.Linear(5, 4), classes=range(4))
    not_image = autoattack(flat, rng.random((8, 5)), rng.integers(0, 4, 8), eps=0.1, steps=3)
    assert list(not_image.params["fooled_by"]) == ["apgd-ce", "apgd-t"]
    with pytest.raises(ParameterError, match="4 classes"):
        apgd(tiny_model(3), X3, y3, eps=0.1, loss="dlr-targeted")
    with pytest.raises(ParameterError, match=">= 1"):
        apgd(tiny_model(3), X3, y3, eps=0.1, steps=0)
