"""Differentially private training: DP-SGD with Opacus, as a scikit-learn classifier.

:class:`DPSGDClassifier` trains a softmax regression (``hidden=0``) or a one-hidden-layer ReLU
network by DP-SGD (Abadi et al. 2016) [1]_ through Opacus [2]_: every step draws a batch by
Poisson sampling (each row independently with probability ``batch_size / n``), clips each
row's gradient to L2 norm ``max_grad_norm``, adds Gaussian noise of standard deviation
``noise_multiplier * max_grad_norm`` to the sum and takes an SGD step. Opacus picks the noise
multiplier that spends exactly the target ``epsilon`` over ``epochs`` epochs at ``delta``
(``PrivacyEngine.make_private_with_epsilon``) and the *RDP* accountant (Mironov 2017) reports
the epsilon actually spent, ``epsilon_ <= epsilon``. The RDP accountant is used rather than
Opacus's default PRV accountant because its epsilon is a closed-form conversion (fast, stable,
never a numerical-precision warning); it is slightly looser, so the model gets slightly more
noise than PRV would give for the same claim, never less.

The guarantee is (epsilon, delta)-DP with respect to adding or removing one row of the data
``fit`` sees, and covers the final estimator only: a preprocessing step fitted on the same rows
(a ``StandardScaler``, the one-hot categories) is not private. :func:`claimed_epsilon` reads
``epsilon_`` for :func:`mlwarden.attacks.privacy_audit` to set beside the empirical bound.

``epsilon=None`` (with ``noise_multiplier`` None or 0) trains the *non-private twin*: the same
network, Poisson batches, per-row clipping and optimiser, without noise. It claims nothing
(``epsilon_`` None), which is what an audit compares a DP model with.

The fitted weights are kept as numpy arrays (``coefs_``, ``intercepts_``, laid out as in
scikit-learn's ``MLPClassifier``): ``predict_proba`` needs neither torch nor Opacus, and skops
saves the fitted estimator with :data:`DP_TRUSTED_TYPES` as its only extra trusted type.

Opacus and torch are an optional extra (``pip install 'mlwarden[dp]'``): nothing here imports
them until :meth:`DPSGDClassifier.fit` runs. Randomness (initial weights, Poisson sampling,
noise) comes from torch generators seeded by ``random_state`` with Opacus's ``secure_mode``
off, so a fit is reproducible; a release that must resist an attacker who could predict the
pseudo-random noise needs ``secure_mode`` and a cryptographic generator, not offered here.

References
----------
.. [1] M. Abadi, A. Chu, I. Goodfellow, H. B. McMahan, I. Mironov, K. Talwar, L. Zhang,
   "Deep Learning with Differential Privacy", ACM CCS 2016.
.. [2] A. Yousefpour et al., "Opacus: User-Friendly Differential Privacy Library in PyTorch",
   arXiv:2109.12298, 2021.
.. [3] I. Mironov, "Rényi Differential Privacy", IEEE CSF 2017.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from mlwarden.errors import ModelError, ParameterError

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "DP_TRUSTED_TYPES",
    "DPSGDClassifier",
    "claimed_delta",
    "claimed_epsilon",
    "default_delta",
]

_INSTALL_HINT = "pip install 'mlwarden[dp]'"

#: Types a saved Pipeline ending in a fitted :class:`DPSGDClassifier` holds beyond what skops
#: and mlwarden's ``TRUSTED_TYPES`` already trust, as ``skops.io.get_untrusted_types`` lists
#: them: only the estimator itself (its weights are plain numpy arrays in lists).
DP_TRUSTED_TYPES: frozenset[str] = frozenset({"mlwarden.models._dp.DPSGDClassifier"})

#: Opacus and torch warnings that normal use of :meth:`DPSGDClassifier.fit` triggers and that
#: say nothing the documentation does not: the notice that ``secure_mode`` is off (we choose
#: reproducible pseudo-random noise); torch's notice that a full backward hook (Opacus's
#: per-sample gradient hook) fires on module outputs because the input needs no gradient
#: (expected: only parameter gradients are wanted); and the RDP accountant's notice that its
#: orders do not reach the optimal one (only at extreme noise; the epsilon is still an upper
#: bound).
_KNOWN_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    ("Secure RNG turned off", UserWarning),
    ("Full backward hook is firing when gradients are computed", UserWarning),
    ("Optimal order is the", UserWarning),
)


def _require_opacus() -> tuple[ModuleType, ModuleType]:
    """Import torch and opacus, or fail naming the extra to install."""
    import importlib

    try:
        torch = importlib.import_module("torch")
        opacus = importlib.import_module("opacus")
    except ImportError as exc:
        raise ModelError(
            f"DPSGDClassifier needs opacus and torch, which are not installed ({exc}): "
            f"{_INSTALL_HINT}"
        ) from exc
    return torch, opacus


def default_delta(n_rows: int) -> float:
    """The delta used when none is given: ``min(1e-5, largest power of ten below 1 / n)``.

    A delta well below ``1 / n`` is the usual requirement (a mechanism that publishes one row
    in ``n`` at random is (0, 1/n)-DP and private in no useful sense). Examples: 1,000 rows
    give 1e-5, 30,000 give 1e-5, 100,000 give 1e-6, 2,000,000 give 1e-7.
    """
    if n_rows < 1:
        raise ParameterError(f"need at least one row, got {n_rows}")
    return min(1e-5, 10.0 ** -(math.floor(math.log10(n_rows)) + 1))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


class DPSGDClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Softmax regression or a one-hidden-layer ReLU network trained by DP-SGD (Opacus).

    Parameters
    ----------
    epsilon : float or None, default 1.0
        Target epsilon of (epsilon, delta)-DP for the whole training run. None trains the
        non-private twin (unless ``noise_multiplier`` is set): same clipping, sampling and
        optimiser, no noise, no claim.
    delta : float or None, default None
        Target delta; None: :func:`default_delta` of the number of training rows
        (``min(1e-5, largest power of ten strictly below 1/n)``).
    noise_multiplier : float or None, default None
        Only with ``epsilon=None``: train with this fixed noise multiplier and report the
        epsilon it spends; None or 0 means no noise (the non-private twin).
    max_grad_norm : float, default 1.0
        Per-row gradient clipping bound (L2).
    epochs : int, default 10
        Passes over the data (expected: Poisson batches vary in size).
    batch_size : int, default 256
        Expected batch size; the sampling rate is ``1 / ceil(n / batch_size)``.
    lr : float, default 0.5
        SGD learning rate (no momentum).
    hidden : int, default 0
        0: softmax (logistic) regression; > 0: one hidden ReLU layer of this width.
    random_state : int or None, default None
        Seeds initial weights, batch sampling and noise. None draws a fresh seed.

    Attributes
    ----------
    classes_ : ndarray
        Class labels, in ``predict_proba`` column order.
    coefs_, intercepts_ : list of ndarray (float32)
        Layer weights ``(n_in, n_out)`` and biases, as in ``MLPClassifier``.
    epsilon_ : float or None
        Epsilon spent according to the RDP accountant at ``delta_`` (<= ``epsilon``); None for
        the non-private twin.
    delta_ : float or None
        The delta of the guarantee; None for the non-private twin.
    noise_multiplier_ : float
        Noise standard deviation over ``max_grad_norm``; 0 for the non-private twin.
    sample_rate_ : float
        Poisson sampling probability per step.
    n_steps_ : int
        Optimiser steps taken.
    n_features_in_ : int
    """

    def __init__(
        self,
        epsilon: float | None = 1.0,
        delta: float | None = None,
        *,
        noise_multiplier: float | None = None,
        max_grad_norm: float = 1.0,
        epochs: int = 10,
        batch_size: int = 256,
        lr: float = 0.5,
        hidden: int = 0,
        random_state: int | None = None,
    ) -> None:
        self.epsilon = epsilon
        self.delta = delta
        self.noise_multiplier = noise_multiplier
        self.max_grad_norm = max_grad_norm
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.hidden = hidden
        self.random_state = random_state

    # ----------------------------------------------------------------------------------------

    def _check_params(self) -> None:
        def positive(name: str, value: Any) -> None:
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ParameterError(f"{name} must be a positive finite number, got {value!r}")

        if self.epsilon is not None:
            positive("epsilon", self.epsilon)
            if self.noise_multiplier is not None:
                raise ParameterError(
                    "set epsilon (the noise is then chosen to spend it) or noise_multiplier "
                    "(with epsilon=None), not both"
                )
        if self.noise_multiplier is not None and not (
            math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0
        ):
            raise ParameterError(
                f"noise_multiplier must be a non-negative number, got {self.noise_multiplier!r}"
            )
        if self.delta is not None and not 0.0 < self.delta < 1.0:
            raise ParameterError(f"delta must lie strictly between 0 and 1, got {self.delta!r}")
        positive("max_grad_norm", self.max_grad_norm)
        positive("lr", self.lr)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.hidden, int) or self.hidden < 0:
            raise ParameterError(f"hidden must be a non-negative integer, got {self.hidden!r}")

    @property
    def _private(self) -> bool:
        return self.epsilon is not None or bool(self.noise_multiplier)

    def fit(self, X: Any, y: Any) -> DPSGDClassifier:
        """Train by DP-SGD (or, for the twin, noiseless clipped SGD) on numeric ``X``.

        Raises
        ------
        ModelError
            opacus or torch is not installed (the message names ``pip install 'mlwarden[dp]'``).
        ValueError
            A bad parameter, non-numeric or non-finite ``X``, or fewer than two classes.
        """
        return self._fit_observed(X, y, None)

    def _fit_observed(self, X: Any, y: Any, observer: Any) -> DPSGDClassifier:
        """:meth:`fit`, with an auditor's ``observer`` (None: plain fit) on every step.

        The seam of the white-box audit (:mod:`mlwarden.attacks._dp_canaries`): the observer's
        ``start(optimizer, sample_rate)`` runs once the optimizer is private,
        ``before_noise(optimizer)`` after per-row clipping and before the noise (the clipped
        sum is in each parameter's ``summed_grad``), ``after_step(optimizer)`` after each
        update. Training itself is the code :meth:`fit` runs; errors are :meth:`fit`'s.
        """
        from sklearn.utils.multiclass import check_classification_targets
        from sklearn.utils.validation import validate_data

        self._check_params()
        X_arr, y_arr = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y_arr)
        classes, codes = np.unique(y_arr, return_inverse=True)
        if len(classes) < 2:
            raise ParameterError(f"need at least two classes to fit, got {len(classes)}")
        torch, _ = _require_opacus()
        from opacus import PrivacyEngine

        delta = default_delta(len(X_arr)) if self.delta is None else float(self.delta)
        seed = (
            int(np.random.SeedSequence().generate_state(1)[0])
            if self.random_state is None
            else int(self.random_state)
        )
        threads = torch.get_num_threads()
        try:
            # One thread: the per-step work is tiny, and on a busy machine more threads make
            # it many times slower (and results depend on none of this).
            torch.set_num_threads(1)
            self._train(torch, PrivacyEngine, X_arr, codes, len(classes), delta, seed, observer)
        finally:
            torch.set_num_threads(threads)
        self.classes_ = classes
        return self

    def _train(
        self,
        torch: Any,
        PrivacyEngine: Any,
        X_arr: np.ndarray,
        codes: np.ndarray,
        n_classes: int,
        delta: float,
        seed: int,
        observer: Any = None,
    ) -> None:
        d = X_arr.shape[1]
        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
            for message, category in _KNOWN_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category)
            # Opacus draws Poisson batches from torch's global generator when secure_mode is
            # off; fork_rng seeds it here and restores the caller's state afterwards.
            torch.manual_seed(seed)
            noise_gen = torch.Generator().manual_seed(seed + 1)
            layers: list[Any] = []
            if self.hidden:
                layers += [torch.nn.Linear(d, self.hidden), torch.nn.ReLU()]
            layers.append(torch.nn.Linear(self.hidden or d, n_classes))
            module = torch.nn.Sequential(*layers)
            optimizer = torch.optim.SGD(module.parameters(), lr=float(self.lr))
            dataset = torch.utils.data.TensorDataset(
                torch.from_numpy(np.ascontiguousarray(X_arr)),
                torch.from_numpy(codes.astype(np.int64)),
            )
            loader = torch.utils.data.DataLoader(dataset, batch_size=self.batch_size)
            engine = PrivacyEngine(accountant="rdp", secure_mode=False)
            common = {
                "module": module,
                "optimizer": optimizer,
                "data_loader": loader,
                "max_grad_norm": float(self.max_grad_norm),
                "poisson_sampling": True,
                "noise_generator": noise_gen,
            }
            if self.epsilon is not None:
                model, dp_optimizer, dp_loader = engine.make_private_with_epsilon(
                    target_epsilon=float(self.epsilon),
                    target_delta=delta,
                    epochs=self.epochs,
                    **common,
                )
            else:
                model, dp_optimizer, dp_loader = engine.make_private(
                    noise_multiplier=float(self.noise_multiplier or 0.0), **common
                )
            if observer is not None:
                _attach(observer, dp_optimizer, 1.0 / len(loader))
            criterion = torch.nn.CrossEntropyLoss()
            steps = 0
            model.train()
            for _ in range(self.epochs):
                for xb, yb in dp_loader:
                    dp_optimizer.zero_grad(set_to_none=True)
                    # An empty Poisson batch still takes a (pure-noise) step, as accounted.
                    loss = criterion(model(xb), yb) if len(yb) else model(xb).sum()
                    loss.backward()
                    dp_optimizer.step()
                    if observer is not None:
                        observer.after_step(dp_optimizer)
                    steps += 1
            linears = [m for m in module if isinstance(m, torch.nn.Linear)]
            self.coefs_ = [
                np.ascontiguousarray(m.weight.detach().numpy().T, dtype=np.float32) for m in linears
            ]
            self.intercepts_ = [
                np.ascontiguousarray(m.bias.detach().numpy(), dtype=np.float32) for m in linears
            ]
            self.noise_multiplier_ = float(dp_optimizer.noise_multiplier)
            self.sample_rate_ = float(1.0 / len(loader))
            self.n_steps_ = steps
            if self._private:
                self.epsilon_: float | None = float(engine.get_epsilon(delta))
                self.delta_: float | None = delta
            else:
                self.epsilon_, self.delta_ = None, None

    def _logits(self, X: Any) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted, validate_data

        check_is_fitted(self, "coefs_")
        values = validate_data(self, X, dtype=np.float32, reset=False)
        h = np.asarray(values, dtype=np.float32)
        last = len(self.coefs_) - 1
        for i, (w, b) in enumerate(zip(self.coefs_, self.intercepts_, strict=True)):
            h = h @ w + b
            if i < last:
                h = np.maximum(h, 0.0)
        return np.asarray(h, dtype=np.float64)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (softmax of the network's logits), computed in numpy."""
        return _softmax(self._logits(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row."""
        return np.asarray(self.classes_[np.argmax(self._logits(X), axis=1)])


def _attach(observer: Any, dp_optimizer: Any, sample_rate: float) -> None:
    """Start ``observer`` and call its ``before_noise`` inside each of the optimizer's steps."""
    observer.start(dp_optimizer, sample_rate)
    add_noise = dp_optimizer.add_noise

    def observed_add_noise() -> None:
        observer.before_noise(dp_optimizer)
        add_noise()

    dp_optimizer.add_noise = observed_add_noise


def _final_step(estimator: Any) -> Any:
    final = estimator
    while hasattr(final, "steps") and final.steps:
        final = final.steps[-1][1]
    return final


def claimed_epsilon(estimator: Any) -> float | None:
    """The epsilon a fitted DP model spent, or None for any other model.

    Reads ``epsilon_`` off a fitted :class:`DPSGDClassifier`, or off the last step of a
    scikit-learn ``Pipeline`` (nested pipelines are followed). Other steps of a pipeline are
    not accounted for: a preprocessing step fitted on the training data (a ``StandardScaler``,
    say) is not private, and strictly the pipeline as a whole then promises nothing.

    Returns
    -------
    float or None
        None for an unfitted estimator, the non-private twin, or any other model.
    """
    final = _final_step(estimator)
    if not isinstance(final, DPSGDClassifier):
        return None
    epsilon = getattr(final, "epsilon_", None)
    return None if epsilon is None else float(epsilon)


def claimed_delta(estimator: Any) -> float | None:
    """The delta of a fitted DP model's guarantee (as :func:`claimed_epsilon`), else None."""
    final = _final_step(estimator)
    if not isinstance(final, DPSGDClassifier):
        return None
    delta = getattr(final, "delta_", None)
    return None if delta is None else float(delta)
