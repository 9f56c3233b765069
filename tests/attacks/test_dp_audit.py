"""Privacy audit: the one-run epsilon bound on hand-made scores, then on real models.

The soundness checks: on an epsilon-DP mechanism (randomised response, and DP-SGD through
Opacus) the lower bound must not exceed epsilon; on a model that memorises, the attack must
beat chance and the bound must be clearly positive.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.tree import DecisionTreeClassifier

from mlwarden import datasets
from mlwarden.attacks._dp_audit import privacy_audit
from mlwarden.attacks._dp_bounds import epsilon_from_roc, epsilon_lower_bound, one_run_p_value
from mlwarden.errors import DataError


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def half_members(m: int, seed: int = 0) -> np.ndarray:
    """Exactly m // 2 members in random positions."""
    flags = np.zeros(m, dtype=bool)
    flags[np.random.default_rng(seed).permutation(m)[: m // 2]] = True
    return flags


@cache
def adult() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adult one-hot (for trees), one-hot with numbers scaled to [0, 1] (for DP-SGD), labels."""
    data = datasets.load("adult")
    onehot = pd.get_dummies(data.X, dtype=float).to_numpy()
    numeric = data.X.select_dtypes("number")
    scaled = (numeric - numeric.min()) / (numeric.max() - numeric.min())
    categorical = pd.get_dummies(data.X.select_dtypes(exclude="number"), dtype=float)
    dense = pd.concat([scaled, categorical], axis=1).to_numpy(dtype=np.float32)
    y = (data.y == data.positive).to_numpy().astype(int)
    return onehot, dense, y


# --------------------------------------------------------------------------------------------
# The one-run bound on hand-made scores


def test_perfect_scores_with_fixed_guesses_match_the_closed_form() -> None:
    member = half_members(1000)
    bound = epsilon_lower_bound(member.astype(float), member, guesses=[(500, 500)])
    # All r = 1000 guesses right: p(eps)^r = 1 - confidence.
    assert bound.n_guesses == bound.n_correct == 1000
    assert bound.n_hypotheses == 1
    assert bound.epsilon == pytest.approx(logit(0.05 ** (1 / 1000)), abs=1e-6)  # ~5.81


def test_perfect_scores_over_the_grid_pay_the_bonferroni_price() -> None:
    member = half_members(1000)
    scores = member + np.random.default_rng(1).random(1000) * 0.5  # still separated
    bound = epsilon_lower_bound(scores, member)
    assert bound.n_correct == bound.n_guesses > 0
    expected = logit((0.05 / bound.n_hypotheses) ** (1 / bound.n_guesses))
    assert bound.epsilon == pytest.approx(expected, abs=1e-6)
    assert 4.5 < bound.epsilon < logit(0.05 ** (1 / 1000))


def test_p_value_for_all_correct_guesses_is_p_to_the_r() -> None:
    for eps in (0.0, 0.5, 3.0):
        q = 1 / (1 + math.exp(-eps))
        assert one_run_p_value(100, 40, 40, eps, 0.0) == pytest.approx(q**40)
    # The delta term only adds.
    assert one_run_p_value(100, 40, 35, 1.0, 1e-3) > one_run_p_value(100, 40, 35, 1.0, 0.0)


@pytest.mark.parametrize("seed", range(4))
def test_random_scores_give_no_bound(seed: int) -> None:
    rng = np.random.default_rng(seed)
    bound = epsilon_lower_bound(rng.normal(size=1000), half_members(1000, seed + 10))
    assert bound.epsilon < 0.2


def test_bound_grows_with_correct_guesses_and_shrinks_with_delta() -> None:
    m, k = 400, 60
    scores = np.arange(m, dtype=float)  # row i has rank i
    previous = -1.0
    for correct in range(k // 2, k + 1, 5):  # right guesses among the k lowest and k highest
        member = np.arange(m) % 2 == 0  # the middle rows: half members
        member[:k] = np.arange(k) >= correct  # bottom k: `correct` non-members first
        member[m - k :] = np.arange(k) < correct  # top k: `correct` members
        bound = epsilon_lower_bound(scores, member, guesses=[(k, k)])
        if bound.epsilon > 0:
            assert bound.n_correct == 2 * correct
        assert bound.epsilon >= previous
        previous = bound.epsilon
    assert previous > 1.5
    member = half_members(m)
    strict = epsilon_lower_bound(member.astype(float), member, guesses=[(100, 100)])
    loose = epsilon_lower_bound(member.astype(float), member, guesses=[(100, 100)], delta=1e-4)
    assert 0 < loose.epsilon < strict.epsilon


@pytest.mark.parametrize("eps", [0.5, 2.0])
def test_bound_is_sound_on_randomised_response(eps: float) -> None:
    """Each row's membership, flipped with probability 1 / (1 + e^eps), is an eps-DP release."""
    exceed, best = 0, 0.0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        member = rng.random(1000) < 0.5
        truthful = rng.random(1000) < 1 / (1 + math.exp(-eps))
        released = np.where(truthful, member, ~member).astype(float)
        bound = epsilon_lower_bound(released, member, seed=seed)
        exceed += bound.epsilon > eps
        best = max(best, bound.epsilon)
    assert exceed <= 2  # at most 5% in expectation
    assert best > 0.4 * eps  # and the audit has some power


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    m=st.integers(4, 300),
    confidence=st.floats(0.5, 0.999),
)
def test_bound_is_well_formed(seed: int, m: int, confidence: float) -> None:
    rng = np.random.default_rng(seed)
    member = half_members(m, seed)
    scores = member * rng.random() * 3 + rng.normal(size=m)
    bound = epsilon_lower_bound(scores, member, confidence=confidence)
    assert bound.epsilon >= 0
    assert 0 <= bound.n_correct <= bound.n_guesses <= m
    assert bound.n_guesses == bound.k_pos + bound.k_neg


def test_bad_inputs_are_refused_with_clear_messages() -> None:
    member = half_members(10)
    with pytest.raises(DataError, match="equally long"):
        epsilon_lower_bound(np.zeros(9), member)
    with pytest.raises(DataError, match="finite"):
        epsilon_lower_bound(np.r_[np.nan, np.zeros(9)], member)
    with pytest.raises(DataError, match="members and non-members"):
        epsilon_lower_bound(np.zeros(10), np.ones(10, dtype=bool))
    for confidence in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="confidence"):
            epsilon_lower_bound(np.zeros(10), member, confidence=confidence)
    with pytest.raises(ValueError, match="delta"):
        epsilon_lower_bound(np.zeros(10), member, delta=1.0)
    with pytest.raises(ValueError, match="k_pos"):
        epsilon_lower_bound(np.zeros(10), member, guesses=[(8, 8)])


# --------------------------------------------------------------------------------------------
# The ROC bound


def test_roc_bound_is_positive_for_a_strong_point_and_zero_at_chance() -> None:
    strong = epsilon_from_roc([0.5], [0.01], 1000, 1000)
    assert strong > 2.0  # log(0.5 / 0.01) ~ 3.9 before the intervals
    assert strong < math.log(0.5 / 0.01)
    assert epsilon_from_roc([0.1, 0.5, 0.9], [0.1, 0.5, 0.9], 1000, 1000) == 0.0
    assert epsilon_from_roc([0.5], [0.01], 1000, 1000, delta=0.1) < strong
    with pytest.raises(DataError, match="alike"):
        epsilon_from_roc([0.5, 0.6], [0.1], 10, 10)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        epsilon_from_roc([1.5], [0.1], 10, 10)
    with pytest.raises(ValueError, match="confidence"):
        epsilon_from_roc([0.5], [0.1], 10, 10, confidence=1.0)


# --------------------------------------------------------------------------------------------
# The experiment on real models


def test_memorising_tree_is_caught() -> None:
    onehot, _, y = adult()
    result = privacy_audit(
        lambda: DecisionTreeClassifier(random_state=0), onehot, y, n_audit=1000, n_test=500
    )
    assert result.auc > 0.55 and result.auc_ci[0] > 0.5
    assert result.epsilon_lower_bound > 0.5
    assert result.bound.n_correct > result.bound.n_guesses / 2
    assert result.claimed_epsilon is None
    assert result.n_train == result.n_included
    assert result.queries == 1000 and result.variant == "loss"
    assert result.test_accuracy is not None and 0.6 < result.test_accuracy < 0.95


def test_lira_variant_runs_and_catches_the_tree() -> None:
    onehot, _, y = adult()
    result = privacy_audit(
        lambda: DecisionTreeClassifier(random_state=0),
        onehot,
        y,
        n_audit=600,
        attack="lira",
        n_reference=2,
        seed=1,
    )
    assert result.variant == "lira-offline" and result.n_reference == 2
    assert result.auc > 0.55
    assert result.epsilon_lower_bound > 0.5


@pytest.mark.parametrize("seed", range(2))
def test_strong_dp_sgd_is_near_chance_and_the_bound_stays_below_epsilon(seed: int) -> None:
    pytest.importorskip("opacus")
    from mlwarden.models._dp import DPSGDClassifier

    _, dense, y = adult()
    result = privacy_audit(
        lambda: DPSGDClassifier(epsilon=0.5, epochs=3, random_state=seed),
        dense,
        y,
        n_audit=1000,
        n_train=2000,
        n_test=1000,
        seed=seed,
    )
    assert result.claimed_epsilon is not None and 0.4 < result.claimed_epsilon <= 0.5
    assert result.bound.delta == 1e-5  # the model's own delta, read off the fitted model
    assert abs(result.auc - 0.5) < 0.05
    assert result.auc_ci[0] <= 0.5 <= result.auc_ci[1]
    assert result.epsilon_lower_bound <= result.claimed_epsilon  # soundness
    assert result.test_accuracy is not None and result.test_accuracy > 0.75


def test_population_and_test_rows_can_be_given_apart() -> None:
    onehot, _, y = adult()
    result = privacy_audit(
        lambda: DecisionTreeClassifier(random_state=0),
        onehot[:1000],
        y[:1000],
        n_audit=400,
        n_train=600,
        attack="lira",
        n_reference=2,
        population=(onehot[1000:2000], y[1000:2000]),
        test=(onehot[2000:2500], y[2000:2500]),
    )
    assert result.params["n_population"] == 1000 and result.n_reference == 2
    assert result.test_accuracy is not None and 0.6 < result.test_accuracy < 0.95
    assert result.epsilon_lower_bound > 0.5
    assert result.roc[0] == (0.0, 0.0) or result.roc[0][0] <= 0.01
    with pytest.raises(ValueError, match="not both"):
        privacy_audit(
            DecisionTreeClassifier, onehot, y, n_audit=10, n_test=5, test=(onehot[:5], y[:5])
        )


def test_audit_refuses_impossible_requests() -> None:
    onehot, _, y = adult()
    with pytest.raises(DataError, match="needs"):
        privacy_audit(DecisionTreeClassifier, onehot[:100], y[:100], n_audit=80, n_train=40)
    with pytest.raises(ValueError, match="attack"):
        privacy_audit(DecisionTreeClassifier, onehot, y, n_audit=10, attack="nope")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="coin flips"):  # seed 0: both coins say "out"
        privacy_audit(DecisionTreeClassifier, onehot, y, n_audit=2, seed=0)
