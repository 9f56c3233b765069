"""RMIA: the pairwise likelihood ratio on known answers, the offline approximation, a real leak."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.ensemble import RandomForestClassifier

from mlwarden.attacks import (
    MembershipResult,
    loss_threshold_attack,
    offline_marginal,
    pairwise_lr_scores,
    rmia,
)
from mlwarden.errors import DataError
from mlwarden.models._adapter import SklearnAdapter
from tests.attacks.test_membership import split

# ---------------------------------------------------------------------------- the score


def test_pairwise_score_on_a_hand_computed_case() -> None:
    # ratio_x = 0.9 / 0.5 = 1.8; ratio_z = [0.5, 1.0, 1.8, 1.9]: LR > 1 for the first two only
    # (a tie, LR = 1 exactly, does not count: the paper's test is strict).
    p_z, m_z = [0.2, 0.5, 0.9, 0.95], [0.4, 0.5, 0.5, 0.5]
    assert pairwise_lr_scores([0.9], [0.5], p_z, m_z) == pytest.approx([0.5])
    # gamma = 2: only z with ratio_z < 0.9 are beaten
    assert pairwise_lr_scores([0.9], [0.5], p_z, m_z, gamma=2.0) == pytest.approx([0.25])
    assert pairwise_lr_scores([0.01, 1.0], [0.5, 0.5], p_z, m_z) == pytest.approx([0.0, 1.0])


@pytest.mark.parametrize(("log_ratio_x", "gamma"), [(1.0, 1.0), (0.0, 1.0), (1.0, np.e), (-2, 1)])
def test_pairwise_score_on_gaussian_log_ratios_is_the_normal_cdf(
    log_ratio_x: float, gamma: float
) -> None:
    # z's log ratios at the quantiles of N(0, 1): the fraction with log r_z < log r_x - log gamma
    # is Phi(log r_x - log gamma), within 1/n.
    n = 20_000
    log_ratio_z = stats.norm.ppf((np.arange(n) + 0.5) / n)
    marginal_z = np.full(n, 0.5)
    p_z = marginal_z * np.exp(log_ratio_z)
    p_x = 0.4 * np.exp(log_ratio_x)
    got = pairwise_lr_scores([p_x], [0.4], p_z, marginal_z, gamma=gamma)[0]
    assert got == pytest.approx(stats.norm.cdf(log_ratio_x - np.log(gamma)), abs=1.0 / n)


def test_a_row_the_target_likes_more_scores_higher() -> None:
    rng = np.random.default_rng(0)
    p_z, m_z = rng.uniform(0.05, 1.0, 500), rng.uniform(0.2, 0.9, 500)
    p_x = np.sort(rng.uniform(0.0, 1.0, 200))
    scores = pairwise_lr_scores(p_x, np.full(200, 0.6), p_z, m_z)
    assert np.all(np.diff(scores) >= 0)
    assert scores[0] < scores[-1]
    # and at the same confidence, a row that is easy for every model scores lower
    easy, hard = pairwise_lr_scores([0.8, 0.8], [0.9, 0.3], p_z, m_z)
    assert easy < hard


def test_offline_approximation_formula() -> None:
    p_out = np.array([0.0, 0.4, 1.0])
    # a = 1: IN looks like OUT, so Pr(x) = Pr_OUT(x); a = 0: IN is certain, Pr(x) = (1 + Pr_OUT) / 2
    assert offline_marginal(p_out, 1.0) == pytest.approx(p_out)
    assert offline_marginal(p_out, 0.0) == pytest.approx([0.5, 0.7, 1.0])
    assert offline_marginal(p_out, 0.3) == pytest.approx(0.5 * (1.3 * p_out + 0.7))
    assert offline_marginal([0.4], 0.3) == pytest.approx([0.61])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: offline_marginal([0.5], 1.5), "a must lie in"),
        (lambda: pairwise_lr_scores([0.5], [0.5], [0.5], [0.5], gamma=0), "gamma must be > 0"),
        (lambda: pairwise_lr_scores([0.5], [0.5], [], []), "at least one population row"),
    ],
)
def test_score_arguments_are_checked(call: Any, message: str) -> None:
    with pytest.raises(DataError, match=message):
        call()


# ---------------------------------------------------------------------------- a real model


def forest() -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=20, random_state=0, n_jobs=1)


@pytest.fixture(scope="module")
def target() -> tuple[dict[str, Any], SklearnAdapter]:
    s = split(500)
    return s, SklearnAdapter(forest().fit(*s["train"]))


def run(target: tuple[dict[str, Any], SklearnAdapter], **kwargs: Any) -> MembershipResult:
    s, model = target
    return rmia(
        model, *s["cand"], s["member"], *s["pop"], forest, n_bootstrap=30, **kwargs
    )  # fmt: skip


def test_rmia_with_two_references_beats_the_loss_attack_at_low_fpr(target: Any) -> None:
    s, model = target
    loss = loss_threshold_attack(model, *s["train"], *s["held"], n_bootstrap=30)
    before = model.queries
    attack = run(target, n_reference=2)
    assert attack.variant == "rmia-offline" and attack.n_reference == 2
    assert attack.auc > loss.auc
    assert attack.tpr_at_fpr[0.01] > 3 * loss.tpr_at_fpr[0.01]
    assert attack.tpr_at_fpr[0.001] > loss.tpr_at_fpr[0.001]
    # the target answers every candidate and every z once; reference models cost nothing
    assert attack.queries == model.queries - before == 1000 + attack.params["n_z"]
    # offline z: the population rows one of the two halves left out (about 3/4 of 1,000)
    assert 650 < attack.params["n_z"] < 850


def test_rmia_online_and_one_reference(target: Any) -> None:
    online = run(target, n_reference=2, online=True)
    assert online.variant == "rmia-online" and online.params["n_z"] == 1000
    assert online.auc > 0.6
    single = run(target, n_reference=1, n_z=200)
    assert single.params["n_z"] == 200 and single.auc > 0.6


def test_rmia_is_seeded_and_takes_dataframes(target: Any) -> None:
    s, model = target
    first, again = run(target, n_reference=1), run(target, n_reference=1)
    assert first.auc == again.auc and first.tpr_at_fpr == again.tpr_at_fpr
    frames = rmia(
        model, pd.DataFrame(s["cand"][0]), pd.Series(s["cand"][1]), s["member"],
        pd.DataFrame(s["pop"][0]), pd.Series(s["pop"][1]), forest, n_reference=1, n_bootstrap=30,
    )  # fmt: skip
    assert frames.auc == first.auc


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_reference": 0}, "n_reference must be >= 1 for offline RMIA"),
        ({"n_reference": 3, "online": True}, "even number >= 2 for online RMIA"),
        ({"a": -0.1}, "a must lie in"),
        ({"n_z": 0}, "n_z must be >= 1"),
    ],
)
def test_rmia_rejects_bad_arguments(target: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(DataError, match=message):
        run(target, **kwargs)
