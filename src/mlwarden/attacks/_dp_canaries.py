"""White-box audit of DP-SGD with Dirac gradient canaries, in one training run.

The threat model of Nasr et al. (2023) [1]_ and Steinke, Nasr & Jagielski (2023) [2]_ (white
box): the auditor adds ``m`` *gradient canaries* to the training steps and sees every
intermediate model. Canary ``i`` is the vector ``C e_j`` (``C`` = ``max_grad_norm``, ``e_j``
the ``j``-th parameter coordinate, a distinct ``j`` per canary: a Dirac canary). A seeded coin
includes each canary with probability 1/2; an included canary is Poisson-sampled at each step
at the rows' rate ``q`` and, when sampled, joins the clipped sum before the noise, exactly as
a training row would. DP-SGD then promises for each canary what it promises for each row.

From each step's update the auditor recovers, per canary coordinate, the contribution that was
not the rows' (the other rows' clipped gradients are known to a DP adversary, who knows every
other record, and their Poisson batch is drawn independently of the canaries)::

    z_t = (-(theta_{t+1} - theta_t) * B / lr - rows' clipped sum) / C  =  b_t + sigma * N(0, 1)

with ``b_t`` 1 if the canary was sampled (never, if excluded) and ``sigma`` the noise
multiplier. A canary's score is the log-likelihood ratio of "included" against "excluded",
summed over steps (:func:`gaussian_step_llr`; the steps are independent given the canary's
inclusion); the top-scored canaries are guessed in, the bottom ones out, and the one-run bound
(:func:`~mlwarden.attacks.epsilon_lower_bound`) turns the guesses into a lower bound on epsilon.

Training is the product's own :class:`~mlwarden.models.DPSGDClassifier` code: the audit hooks
its Opacus optimiser through a private seam (after clipping, before the noise) and does not
re-implement DP-SGD.

References
----------
.. [1] M. Nasr, J. Hayes, T. Steinke, B. Balle, F. Tramèr, M. Jagielski, N. Carlini,
   A. Terzis, "Tight Auditing of Differentially Private Machine Learning", USENIX Security 2023.
.. [2] T. Steinke, M. Nasr, M. Jagielski, "Privacy Auditing with One (1) Training Run",
   NeurIPS 2023.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from mlwarden.attacks._dp_audit import PrivacyAuditResult, audit_result, held_out_accuracy
from mlwarden.attacks._dp_bounds import check_confidence_delta, epsilon_lower_bound
from mlwarden.attacks._dp_fdp import epsilon_lower_bound_gdp
from mlwarden.attacks._membership import _labels
from mlwarden.errors import DataError, ModelError, ParameterError
from mlwarden.models import DPSGDClassifier
from mlwarden.models import claimed_delta as _claimed_delta
from mlwarden.models import claimed_epsilon as _claimed_epsilon

__all__ = ["dp_sgd_canary_audit", "gaussian_step_llr"]


def gaussian_step_llr(z: Any, sample_rate: float, sigma: float) -> np.ndarray:
    """Log-likelihood ratio of one step's observation ``z``: canary included vs excluded.

    Excluded, ``z ~ N(0, sigma^2)``; included, the canary is sampled with probability ``q``
    and ``z ~ (1 - q) N(0, sigma^2) + q N(1, sigma^2)`` (the subsampled Gaussian mechanism in
    units of the clipping norm). The ratio is ``log(1 - q + q exp((2 z - 1) / (2 sigma^2)))``,
    computed without overflow. By Neyman-Pearson its sum over independent steps is the most
    powerful test of inclusion, stronger than the plain sum of ``z`` when ``q < 1``.
    """
    if not 0.0 < sample_rate <= 1.0:
        raise ParameterError(f"sample_rate must lie in (0, 1], got {sample_rate}")
    if not sigma > 0.0:
        raise ParameterError(f"sigma must be positive, got {sigma}")
    shift = (2.0 * np.asarray(z, dtype=float) - 1.0) / (2.0 * sigma * sigma)
    if sample_rate == 1.0:
        return shift
    return np.asarray(np.logaddexp(np.log1p(-sample_rate), np.log(sample_rate) + shift))


class _DiracCanaries:
    """The auditor's side of the seam: inserts the canaries, sums each step's ``z`` and LR."""

    def __init__(self, n_canaries: int, rng: np.random.Generator) -> None:
        self.m = n_canaries
        self.rng = rng
        self.included = rng.random(n_canaries) < 0.5
        if self.included.all() or not self.included.any():
            raise DataError(
                f"the coin flips included {int(self.included.sum())} of {n_canaries} canaries; "
                "use more canaries or another seed"
            )
        self.coords = np.zeros(0, dtype=np.int64)
        self.n_steps = 0
        self.last_z = np.zeros(n_canaries)  # the latest step's z, per canary
        self._sum_z = np.zeros(n_canaries)
        self._sum_llr = np.zeros(n_canaries)
        self._slots: list[tuple[Any, Any, np.ndarray]] = []
        self._pending: tuple[np.ndarray, np.ndarray] | None = None

    def start(self, optimizer: Any, sample_rate: float) -> None:
        torch = importlib.import_module("torch")
        params = list(optimizer.params)
        sizes = [p.numel() for p in params]
        if self.m > sum(sizes):
            raise ParameterError(
                f"{self.m} Dirac canaries need as many parameters, the model has {sum(sizes)}: "
                "use fewer canaries or a wider network (hidden > 0)"
            )
        self.coords = self.rng.choice(sum(sizes), self.m, replace=False)
        offsets = np.cumsum([0, *sizes])
        for p, low, high in zip(params, offsets[:-1], offsets[1:], strict=True):
            ids = np.flatnonzero((self.coords >= low) & (self.coords < high))
            if len(ids):
                self._slots.append((p, torch.from_numpy(self.coords[ids] - low), ids))
        self.sample_rate = float(sample_rate)
        self.clip = float(optimizer.max_grad_norm)
        self.noise_multiplier = float(optimizer.noise_multiplier)
        self._torch = torch

    def _values(self, tensors: list[Any]) -> np.ndarray:
        out = np.empty(self.m)
        for t, (_, idx, ids) in zip(tensors, self._slots, strict=True):
            out[ids] = t.detach().reshape(-1)[idx].double().numpy()
        return out

    def before_noise(self, optimizer: Any) -> None:
        sampled = self.included & (self.rng.random(self.m) < self.sample_rate)
        real = self._values([p.summed_grad for p, _, _ in self._slots])
        self._pending = (real, self._values([p for p, _, _ in self._slots]))
        for p, idx, ids in self._slots:
            canary = self._torch.from_numpy(sampled[ids] * self.clip).to(p.summed_grad.dtype)
            p.summed_grad.view(-1).index_add_(0, idx, canary)

    def after_step(self, optimizer: Any) -> None:
        if self._pending is None:
            raise ModelError("the DP optimiser stepped without adding noise; cannot audit it")
        real, before = self._pending
        self._pending = None
        after = self._values([p for p, _, _ in self._slots])
        scale = optimizer.expected_batch_size if optimizer.loss_reduction == "mean" else 1.0
        summed = -(after - before) * scale / optimizer.param_groups[0]["lr"]
        self.last_z = (summed - real) / self.clip
        self._sum_z += self.last_z
        if self.noise_multiplier > 0.0:
            self._sum_llr += gaussian_step_llr(self.last_z, self.sample_rate, self.noise_multiplier)
        self.n_steps += 1

    def scores(self, score: str) -> tuple[np.ndarray, str]:
        """Each canary's score and the statistic used (the LR needs noise: else the sum)."""
        if score == "sum" or self.noise_multiplier == 0.0:
            return self._sum_z, "sum"
        return self._sum_llr, "llr"


def _fit_with_canaries(model: Any, X: Any, y: Any, canaries: _DiracCanaries) -> None:
    """Fit ``model`` (a DPSGDClassifier or pipelines ending in one) with the canaries inserted."""
    if isinstance(model, DPSGDClassifier):
        model._fit_observed(X, y, canaries)
        return
    if not (hasattr(model, "steps") and model.steps):
        raise ParameterError(
            "the white-box audit inserts gradient canaries into DPSGDClassifier's training; "
            f"got {type(model).__name__}, expected a DPSGDClassifier or a Pipeline ending in one"
        )
    Xt = model[:-1].fit_transform(X, y) if len(model.steps) > 1 else X
    _fit_with_canaries(model.steps[-1][1], Xt, y, canaries)


def _bound_method(bound: str, sample_rate: float, delta: float) -> str:
    """``auto``: the Gaussian f-DP bound where the claim implies it (full batch, delta > 0)."""
    gaussian = sample_rate == 1.0 and delta > 0.0
    if bound == "gdp" and not gaussian:
        raise ParameterError(
            "the Gaussian f-DP bound needs full-batch training (sample rate 1, got "
            f"{sample_rate:.3g}) and delta > 0 (got {delta:g}); use bound='steinke'"
        )
    return "gdp" if bound == "gdp" or (bound == "auto" and gaussian) else "steinke"


def dp_sgd_canary_audit(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    n_canaries: int = 1000,
    score: Literal["llr", "sum"] = "llr",
    bound: Literal["auto", "steinke", "gdp"] = "auto",
    test: tuple[Any, Any] | None = None,
    claimed_epsilon: float | None = None,
    delta: float | None = None,
    confidence: float = 0.95,
    guesses: Sequence[tuple[int, int]] | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> PrivacyAuditResult:
    """White-box one-run audit of DP-SGD: Dirac gradient canaries, every step observed.

    A clone of ``estimator`` (a :class:`~mlwarden.models.DPSGDClassifier`, or a Pipeline
    ending in one) is fitted on ``X, y`` with ``n_canaries`` Dirac gradient canaries inserted
    as the module docstring describes; each canary's score (``score="llr"``: the summed
    per-step likelihood ratio of :func:`gaussian_step_llr` at the optimiser's noise
    multiplier; ``"sum"``: the summed ``z``; a noiseless twin always uses the sum) gives the
    membership metrics and a one-run lower bound on epsilon:

    * ``bound="steinke"``: :func:`~mlwarden.attacks.epsilon_lower_bound` (Steinke et al.
      2023), valid for any (epsilon, delta) claim. With ``m`` canaries all guessed right it
      is about ``ln(m / 3)`` at 95% and its ``2 m delta`` slack caps it further: near 2 for
      a claim of 8 at delta 1e-5, even for an ideal Gaussian mechanism.
    * ``bound="gdp"``: :func:`~mlwarden.attacks.epsilon_lower_bound_gdp` (Mahloujifar et
      al. 2024), the Gaussian f-DP null, which the claim implies only for full-batch
      training (sample rate 1; refused otherwise). Near 3.9 for a claim of 8 with 10^4
      canaries; a model with a tenth of its claimed noise is then caught at a claim of 8
      with a few thousand canaries.
    * ``bound="auto"`` (default): ``"gdp"`` where it is valid, else ``"steinke"``.

    Use a network with at least ``n_canaries`` parameters (``hidden > 0``); full-batch
    training (``batch_size >= n``) over few epochs audits best.

    Parameters
    ----------
    estimator : DPSGDClassifier or Pipeline
        The training procedure to audit (cloned, never fitted itself).
    X, y : array-like
        Training rows and labels.
    n_canaries : int, default 1000
        Canaries ``m``, each on its own parameter coordinate; about half are included.
    score : {"llr", "sum"}, default "llr"
        The per-canary statistic.
    bound : {"auto", "steinke", "gdp"}, default "auto"
        The one-run bound (above).
    test : (X, y) or None
        Held-out rows for ``test_accuracy`` (of the model trained with the canaries).
    claimed_epsilon, delta : float or None
        The claim to report and the bound's delta; None: the fitted model's own.
    confidence, guesses : float, sequence or None
        Passed to the bound (``gdp`` uses each pair's ``k_pos`` only: "in" guesses).
    n_bootstrap : int, default 200
        Bootstrap resamples for the metric intervals.
    seed : int, default 0
        Seeds the coins, the canary coordinates and their sampling.

    Returns
    -------
    PrivacyAuditResult
        ``variant`` ``"white-box-dirac"``, ``n_audit`` the canaries, ``queries`` 0; ``params``
        holds the statistic and bound used, steps, sample rate and noise multiplier.

    Raises
    ------
    ValueError
        Not a DPSGDClassifier, more canaries than parameters, a bad ``score``, ``bound``,
        count, ``confidence`` or ``delta``, ``bound="gdp"`` without full-batch training;
        coin flips that included no canary or all of them.
    """
    from sklearn.base import clone

    started = time.perf_counter()
    if score not in ("llr", "sum"):
        raise ParameterError(f"score must be 'llr' or 'sum', got {score!r}")
    if bound not in ("auto", "steinke", "gdp"):
        raise ParameterError(f"bound must be 'auto', 'steinke' or 'gdp', got {bound!r}")
    if not isinstance(n_canaries, int) or n_canaries < 2:
        raise ParameterError(f"n_canaries must be an integer >= 2, got {n_canaries!r}")
    check_confidence_delta(confidence, 0.0 if delta is None else delta)
    labels = _labels(y, "y", len(X))
    canaries = _DiracCanaries(n_canaries, np.random.default_rng(seed))
    model = clone(estimator)
    _fit_with_canaries(model, X, labels, canaries)
    scores, used = canaries.scores(score)

    if delta is None:
        delta = _claimed_delta(model) or 0.0
    method = _bound_method(bound, canaries.sample_rate, delta)
    if method == "gdp":
        k_pos = None if guesses is None else [kp for kp, _ in guesses]
        lower = epsilon_lower_bound_gdp(
            scores, canaries.included, delta=delta, confidence=confidence, guesses=k_pos, seed=seed
        )
    else:
        lower = epsilon_lower_bound(
            scores,
            canaries.included,
            delta=delta,
            confidence=confidence,
            guesses=guesses,
            seed=seed,
        )
    claimed = _claimed_epsilon(model) if claimed_epsilon is None else float(claimed_epsilon)
    return audit_result(
        variant="white-box-dirac",
        started=started,
        included=canaries.included,
        scores=scores,
        bound=lower,
        claimed_epsilon=claimed,
        accuracy=None if test is None else held_out_accuracy(model, test),
        n_train=len(labels),
        n_reference=0,
        queries=0,
        params={
            "score": used,
            "bound": method,
            "n_canaries": n_canaries,
            "n_steps": canaries.n_steps,
            "sample_rate": canaries.sample_rate,
            "noise_multiplier": canaries.noise_multiplier,
            "delta": delta,
            "confidence": confidence,
            "seed": seed,
        },
        n_bootstrap=n_bootstrap,
    )
