"""White-box DP-SGD audit: the per-step statistic, the canary seam, soundness and a planted bug."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from mlwarden.attacks import (
    dp_sgd_canary_audit,
    epsilon_lower_bound,
    epsilon_lower_bound_gdp,
    gaussian_mu,
    gaussian_step_llr,
)
from mlwarden.attacks._dp_fdp import GDP_GUESS_FRACTIONS
from mlwarden.errors import ParameterError

# --------------------------------------------------------------------------------------------
# The per-step statistic on the subsampled Gaussian mechanism


def test_step_llr_is_the_log_density_ratio_of_the_subsampled_gaussian() -> None:
    z = np.linspace(-3.0, 4.0, 15)
    for q, sigma in [(0.1, 0.8), (0.5, 2.0), (0.01, 0.3)]:
        excluded = stats.norm.pdf(z, 0.0, sigma)
        included = (1 - q) * excluded + q * stats.norm.pdf(z, 1.0, sigma)
        np.testing.assert_allclose(
            gaussian_step_llr(z, q, sigma), np.log(included / excluded), rtol=1e-9, atol=1e-12
        )
    # Far in the tail it neither overflows nor loses the linear growth.
    assert np.isfinite(gaussian_step_llr(1e4, 0.1, 0.01))


def test_full_batch_llr_sum_has_the_known_gaussian_law() -> None:
    """q = 1: the summed statistic is N(-+T/(2 sigma^2), T/sigma^2) for out / in canaries."""
    rng = np.random.default_rng(0)
    steps, sigma, n = 10, 2.0, 20000
    for member, sign in ((False, -1.0), (True, 1.0)):
        z = float(member) + sigma * rng.standard_normal((steps, n))
        total = gaussian_step_llr(z, 1.0, sigma).sum(axis=0)
        assert total.mean() == pytest.approx(sign * steps / (2 * sigma**2), abs=0.03)
        assert total.var() == pytest.approx(steps / sigma**2, rel=0.05)


def test_llr_beats_the_plain_sum_when_subsampled() -> None:
    rng = np.random.default_rng(1)
    steps, q, sigma, m = 200, 0.05, 0.8, 4000
    member = rng.random(m) < 0.5
    z = (member & (rng.random((steps, m)) < q)) + sigma * rng.standard_normal((steps, m))
    auc_llr = roc_auc_score(member, gaussian_step_llr(z, q, sigma).sum(axis=0))
    auc_sum = roc_auc_score(member, z.sum(axis=0))
    assert auc_llr > auc_sum + 0.01
    with pytest.raises(ValueError, match="sample_rate"):
        gaussian_step_llr(z, 0.0, sigma)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_step_llr(z, q, 0.0)


# --------------------------------------------------------------------------------------------
# The one-run bound against the Gaussian f-DP null


def test_gaussian_mu_inverts_the_gaussian_privacy_profile() -> None:
    # mu = 1 at eps = 1: delta = Phi(-1/2) - e Phi(-3/2) (Dong, Roth & Su, Corollary 2.13)
    delta = stats.norm.cdf(-0.5) - math.e * stats.norm.cdf(-1.5)
    assert delta == pytest.approx(0.12693, abs=1e-5)
    assert gaussian_mu(1.0, delta) == pytest.approx(1.0, rel=1e-8)
    assert gaussian_mu(2.0, 1e-5) < gaussian_mu(8.0, 1e-5) < gaussian_mu(8.0, 1e-3)


def gaussian_canaries(mu: float, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores of an exactly mu-GDP release of each canary's bit: N(mu * bit, 1)."""
    rng = np.random.default_rng(seed)
    member = rng.random(m) < 0.5
    return mu * member + rng.standard_normal(m), member


@pytest.mark.parametrize("epsilon", [1.0, 8.0])
def test_gdp_bound_is_sound_at_the_null_and_beats_steinke(epsilon: float) -> None:
    """A mechanism exactly as private as the claim: no bound above it, and real power."""
    mu = gaussian_mu(epsilon, 1e-5)
    gdp, steinke = [], []
    for seed in range(20):
        scores, member = gaussian_canaries(mu, 4000, seed)
        gdp.append(epsilon_lower_bound_gdp(scores, member, delta=1e-5, seed=seed).epsilon)
        steinke.append(epsilon_lower_bound(scores, member, delta=1e-5, seed=seed).epsilon)
    assert max(gdp) <= epsilon
    assert np.mean(gdp) > 0.25 * epsilon
    assert np.mean(gdp) > np.mean(steinke)


def test_gdp_bound_rejects_a_claim_the_scores_break() -> None:
    scores, member = gaussian_canaries(3 * gaussian_mu(8.0, 1e-5), 3000, 0)  # far less private
    bound = epsilon_lower_bound_gdp(scores, member, delta=1e-5)
    assert bound.epsilon > 8.0 and bound.k_neg == 0
    assert bound.n_correct <= bound.n_guesses == bound.k_pos
    assert bound.n_hypotheses == len(GDP_GUESS_FRACTIONS)
    fixed = epsilon_lower_bound_gdp(scores, member, delta=1e-5, guesses=[bound.k_pos])
    assert fixed.n_hypotheses == 1 and fixed.epsilon >= bound.epsilon  # no Bonferroni price
    with pytest.raises(ValueError, match="delta > 0"):
        epsilon_lower_bound_gdp(scores, member, delta=0.0)
    with pytest.raises(ValueError, match="guess count"):
        epsilon_lower_bound_gdp(scores, member, delta=1e-5, guesses=[0])


# --------------------------------------------------------------------------------------------
# The audit on DP-SGD through the product's training loop


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    pytest.importorskip("opacus")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    y = (X[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(int)
    return X, y


def dpsgd(epsilon: float | None, seed: int = 0, epochs: int = 1, **kw: object) -> object:
    """Full batch (300 rows, batch 512): one step per epoch, every row and canary sampled."""
    from mlwarden.models import DPSGDClassifier

    kw = {"hidden": 64, "batch_size": 512, **kw}
    return DPSGDClassifier(epsilon=epsilon, epochs=epochs, lr=0.5, random_state=seed, **kw)


def flat_params(model: object) -> np.ndarray:
    """Parameters in the optimiser's order: each layer's weight (out, in), then its bias."""
    parts = []
    for w, b in zip(model.coefs_, model.intercepts_, strict=True):  # type: ignore[attr-defined]
        parts += [w.T.ravel(), b]
    return np.concatenate(parts).astype(np.float64)


def test_without_noise_canaries_move_only_their_coordinates_by_lr_c_over_b(data) -> None:
    from mlwarden.attacks._dp_canaries import _DiracCanaries

    X, y = data
    plain = dpsgd(None, max_grad_norm=2.0).fit(X, y)
    canaries = _DiracCanaries(100, np.random.default_rng(3))
    audited = dpsgd(None, max_grad_norm=2.0)._fit_observed(X, y, canaries)
    assert audited.n_steps_ == 1 and audited.sample_rate_ == 1.0  # full batch: every row, once
    moved = flat_params(audited) - flat_params(plain)
    others = np.ones(len(moved), dtype=bool)
    others[canaries.coords] = False
    np.testing.assert_array_equal(moved[others], 0.0)
    expected = -0.5 * 2.0 / len(X) * canaries.included  # -lr * C / B for an included canary
    np.testing.assert_allclose(moved[canaries.coords], expected, atol=1e-6)
    # and the auditor reads each canary's contribution back from the update
    np.testing.assert_allclose(canaries.last_z, canaries.included, atol=1e-3)


@pytest.mark.parametrize("epsilon", [1.0, 2.0, 4.0, 8.0])
def test_sound_dp_sgd_stays_below_its_claim_and_the_twin_far_above(data, epsilon) -> None:
    X, y = data
    bounds = []
    for seed in range(3):
        for bound in ("gdp", "steinke"):
            result = dp_sgd_canary_audit(
                dpsgd(epsilon, seed), X, y, n_canaries=600, bound=bound, seed=seed
            )
            assert result.claimed_epsilon is not None
            assert result.claimed_epsilon == pytest.approx(epsilon, rel=0.01)
            assert result.epsilon_lower_bound <= result.claimed_epsilon  # soundness
            assert result.params["score"] == "llr" and result.params["bound"] == bound
            assert result.queries == 0
            bounds.append(result.epsilon_lower_bound)
    twin = dp_sgd_canary_audit(dpsgd(None), X, y, n_canaries=600, delta=1e-5, seed=5)
    assert twin.auc == 1.0 and twin.claimed_epsilon is None and twin.params["bound"] == "gdp"
    assert twin.epsilon_lower_bound > max(bounds) + 2.0
    if epsilon == 8.0:
        assert max(bounds) > 2.0  # the audit has power where the claim is weak


@pytest.fixture
def tenth_of_the_noise(monkeypatch) -> None:
    """The planted bug: Opacus adds a tenth of its noise while the accountant is unaware."""
    from opacus.optimizers import optimizer as dp_optimizer

    real_noise = dp_optimizer._generate_noise

    def weak_noise(std: float, reference: object, *args: object, **kwargs: object) -> object:
        return real_noise(std / 10, reference, *args, **kwargs)

    monkeypatch.setattr(dp_optimizer, "_generate_noise", weak_noise)


@pytest.mark.parametrize(("epsilon", "bound", "m"), [(8.0, "gdp", 3000), (2.0, "steinke", 600)])
def test_noise_ten_times_below_the_claim_is_caught(data, tenth_of_the_noise, epsilon, bound, m):
    X, y = data
    model = dpsgd(epsilon, hidden=512)  # 5,000 parameters: room for the canaries
    result = dp_sgd_canary_audit(model, X, y, n_canaries=m, bound=bound)
    assert result.claimed_epsilon == pytest.approx(epsilon, rel=0.01)  # the accountant is fooled
    assert result.epsilon_lower_bound > result.claimed_epsilon  # the audit is not


def test_a_pipeline_is_audited_through_its_final_step(data) -> None:
    X, y = data
    pipeline = make_pipeline(StandardScaler(), dpsgd(4.0, epochs=5))
    result = dp_sgd_canary_audit(pipeline, X, y, n_canaries=200, score="sum", test=(X, y))
    assert result.params["n_steps"] == 5 and result.params["score"] == "sum"
    assert result.epsilon_lower_bound <= result.claimed_epsilon  # type: ignore[operator]
    assert result.test_accuracy is not None and 0.0 <= result.test_accuracy <= 1.0
    assert not hasattr(pipeline, "n_features_in_")  # the caller's estimator stays unfitted


def test_bad_requests_are_refused(data) -> None:
    X, y = data
    with pytest.raises(ParameterError, match="DPSGDClassifier"):
        dp_sgd_canary_audit(DecisionTreeClassifier(), X, y, n_canaries=10)
    with pytest.raises(ParameterError, match="parameters"):
        dp_sgd_canary_audit(dpsgd(1.0, hidden=0), X, y, n_canaries=100)  # 18 parameters
    with pytest.raises(ParameterError, match="score"):
        dp_sgd_canary_audit(dpsgd(1.0), X, y, score="max")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="n_canaries"):
        dp_sgd_canary_audit(dpsgd(1.0), X, y, n_canaries=1)
    with pytest.raises(ParameterError, match="full-batch"):  # batch 100 of 300 rows: q = 1/3
        dp_sgd_canary_audit(dpsgd(1.0, batch_size=100), X, y, n_canaries=50, bound="gdp")
    sampled = dp_sgd_canary_audit(dpsgd(1.0, batch_size=100), X, y, n_canaries=50)
    assert sampled.params["bound"] == "steinke" and sampled.params["n_steps"] == 3


# --------------------------------------------------------------------------------------------
# The dp_audit check's white-box option


def _check_context(model: object, data: tuple[np.ndarray, np.ndarray]) -> object:
    import pandas as pd

    from mlwarden.audit import CheckContext
    from mlwarden.models import SklearnAdapter

    X, y = pd.DataFrame(data[0]), pd.Series(data[1])
    pipe = make_pipeline(StandardScaler(), model).fit(X[:250], y[:250])
    return CheckContext(SklearnAdapter(pipe), X[:250], y[:250], X[250:], y[250:], 1)


def test_the_check_runs_the_white_box_audit_beside_the_twin(data) -> None:
    import mlwarden.audit._dp_audit  # noqa: F401  (registers the check)
    from mlwarden.audit import run_check

    params = {"max_empirical_epsilon": 1.0, "white_box": True, "n_canaries": 400}
    finding = run_check("dp_audit", params, _check_context(dpsgd(2.0), data))
    dp, twin = finding.details["audits"].values()
    assert finding.details["attack"] == "white-box-dirac" and finding.details["n_audit"] == 400
    assert dp["empirical_epsilon"] <= dp["claimed_epsilon"] and not finding.details["exceeds_claim"]
    assert twin["empirical_epsilon"] > dp["empirical_epsilon"] + 2.0
    assert finding.passed == (finding.value <= 1.0)
    assert "gradient canaries" in finding.details["tables"][0]["title"]
    tree = _check_context(DecisionTreeClassifier(max_depth=2), data)
    refused = run_check("dp_audit", params, tree)
    assert refused.value is None and "DPSGDClassifier" in refused.message
    narrow = run_check("dp_audit", params, _check_context(dpsgd(2.0, hidden=0), data))
    assert narrow.value is None and not narrow.passed
    assert narrow.message.startswith("not measured: 400 Dirac canaries need as many parameters")
