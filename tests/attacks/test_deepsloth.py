"""DeepSloth: white-box, universal and transfer slowdown on a Digits SDN, against random noise."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mlwarden.attacks._deepsloth import (  # noqa: E402
    deepsloth,
    random_slowdown,
    slowdown_loss,
    transfer_deepsloth,
    universal_deepsloth,
)
from mlwarden.models._sdn import EarlyExitNetwork, digits_sdn, train_sdn  # noqa: E402
from mlwarden.models._torch import load_digits_split  # noqa: E402

Q = 0.9  # a common SDN confidence threshold; the bench also uses the calibrated one
EPS = 0.2


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core box, two threads contend and run far slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    split = load_digits_split()
    victim = train_sdn(digits_sdn(16, seed=0), split.X_train, split.y_train, epochs=8, seed=0)
    surrogate = train_sdn(digits_sdn(8, seed=1), split.X_train, split.y_train, epochs=8, seed=1)
    return {
        "victim": victim,
        "surrogate": surrogate,
        "X": split.X_test[:150],
        "y": split.y_test[:150],
        "X_train": split.X_train,
    }


def test_loss_is_zero_only_for_uniform_ics() -> None:
    uniform = [torch.zeros(2, 5), torch.zeros(2, 5), torch.randn(2, 5)]
    assert torch.allclose(slowdown_loss(uniform), torch.zeros(2), atol=1e-6)
    peaked = [torch.tensor([[5.0, 0, 0, 0, 0]]), torch.zeros(1, 5)]
    assert float(slowdown_loss(peaked)[0]) > 1.0


def test_white_box_attack_removes_most_of_the_efficacy(setup: dict[str, Any]) -> None:
    victim: EarlyExitNetwork = setup["victim"]
    result = deepsloth(victim, setup["X"], setup["y"], eps=EPS, threshold=Q, steps=10, seed=0)
    assert result.efficacy_clean > 0.3
    assert result.efficacy_reduction >= 50.0
    assert result.efficacy_adversarial < result.efficacy_clean
    assert result.mean_compute_adversarial > result.mean_compute_clean
    assert result.exits_adversarial[-1] > result.exits_clean[-1]
    assert sum(result.exits_adversarial) == len(setup["X"])
    assert result.latency_clean is not None and result.latency_adversarial is not None
    assert result.accuracy_clean is not None and result.accuracy_clean > 0.8
    adv = result.adversarial
    assert adv is not None
    assert np.abs(adv - setup["X"]).max() <= EPS + 1e-6
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert result.queries == len(setup["X"]) * 12
    again = deepsloth(victim, setup["X"], eps=EPS, threshold=Q, steps=10, seed=0, latency=False)
    assert np.array_equal(again.adversarial, adv)  # type: ignore[arg-type]
    assert again.accuracy_clean is None


def test_l2_attack_stays_in_its_ball_and_beats_noise(setup: dict[str, Any]) -> None:
    victim = setup["victim"]
    kw: dict[str, Any] = {"eps": 1.0, "threshold": Q, "norm": "l2", "latency": False}
    attack = deepsloth(victim, setup["X"], steps=10, **kw)
    noise = random_slowdown(victim, setup["X"], **kw)
    assert attack.max_perturbation <= 1.0 + 1e-5
    assert attack.efficacy_reduction > noise.efficacy_reduction + 20


def test_universal_and_transfer_sit_between_noise_and_white_box(setup: dict[str, Any]) -> None:
    victim, X = setup["victim"], setup["X"]
    kw: dict[str, Any] = {"eps": EPS, "threshold": Q, "latency": False}
    white = deepsloth(victim, X, steps=10, **kw)
    noise = random_slowdown(victim, X, **kw)
    universal = universal_deepsloth(victim, setup["X_train"], X, steps=40, **kw)
    transfer = transfer_deepsloth(victim, setup["surrogate"], X, steps=10, **kw)
    delta = universal.perturbation
    assert delta is not None and delta.shape == (64,) and np.abs(delta).max() <= EPS + 1e-6
    assert transfer.queries == len(X)  # the evaluation only: crafting used the surrogate
    for partial in (universal, transfer):
        assert noise.efficacy_reduction < partial.efficacy_reduction
        assert partial.efficacy_reduction < white.efficacy_reduction


def test_compute_cap_holds_under_attack(setup: dict[str, Any]) -> None:
    result = deepsloth(
        setup["victim"], setup["X"], eps=EPS, threshold=Q, steps=5, max_exit=1, latency=False
    )
    assert result.exits_adversarial[2:] == [0, 0]
    assert result.mean_compute_adversarial <= setup["victim"].exit_fractions[1] + 1e-12


def test_bad_arguments_are_refused(setup: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="EarlyExitNetwork"):
        deepsloth(object(), setup["X"], eps=0.1, threshold=Q)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="norm"):
        deepsloth(setup["victim"], setup["X"], eps=0.1, threshold=Q, norm="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clip"):
        deepsloth(setup["victim"], setup["X"] + 2, eps=0.1, threshold=Q)


def test_adversarial_training_runs_deterministically() -> None:
    split = load_digits_split()
    X, y = split.X_train[:128], split.y_train[:128]
    kw: dict[str, Any] = {"epochs": 1, "seed": 0, "adversarial_eps": 0.2, "adversarial_steps": 2}
    a = train_sdn(digits_sdn(4, seed=0), X, y, **kw)
    b = train_sdn(digits_sdn(4, seed=0), X, y, **kw)
    plain = train_sdn(digits_sdn(4, seed=0), X, y, epochs=1, seed=0)
    key = "heads.0.linear.weight"
    assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    assert not torch.equal(a.state_dict()[key], plain.state_dict()[key])
