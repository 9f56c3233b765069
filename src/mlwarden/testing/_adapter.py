"""The model adapter's contract, checked on any implementation (scikit-learn's ``check_estimator``).

Every attack takes any :class:`~mlwarden.models.ModelAdapter`, so every adapter must keep the same
promises: probabilities of shape ``(n, k)`` whose rows sum to 1, ``predict`` that agrees with
them, one query counted per row, a budget that refuses a call whole, gradients of the input's
shape where it offers them, the same answer twice, and bad input refused with an error of
:mod:`mlwarden.errors` that names what was expected. :func:`check_adapter` runs each promise as
a named check on fresh adapters and raises ``AssertionError`` naming the first one broken.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mlwarden.errors import MlwardenError, QueryBudgetExceeded
from mlwarden.models import HasGradient, ModelAdapter

__all__ = ["check_adapter"]

AdapterFactory = Callable[[int | None], ModelAdapter]
_TOLERANCE = 1e-6


class _Probe:
    """The inputs, labels and factory every check reads, and the failure message they raise."""

    def __init__(self, factory: AdapterFactory, X: Any, y: Any) -> None:
        self.factory, self.X, self.y, self.n = factory, X, y, len(X)

    def fresh(self, budget: int | None = None) -> ModelAdapter:
        """A new adapter from the factory, so no check sees another's spent queries."""
        adapter = self.factory(budget)
        if not isinstance(adapter, ModelAdapter):
            raise AssertionError(
                f"check_adapter: the factory returned {type(adapter).__name__}, which lacks "
                "classes_, queries, predict_proba or predict"
            )
        return adapter

    def rows(self, start: int, stop: int) -> Any:
        """Rows ``start:stop`` of ``X``, array or DataFrame."""
        return self.X.iloc[start:stop] if isinstance(self.X, pd.DataFrame) else self.X[start:stop]


def _fail(check: str, why: str) -> AssertionError:
    """The error every check raises, naming itself first."""
    return AssertionError(f"check_adapter: {check}: {why}")


def _check_classes(p: _Probe) -> None:
    classes = np.asarray(p.fresh().classes_)
    if classes.ndim != 1 or len(classes) < 2 or len(np.unique(classes)) != len(classes):
        raise _fail("classes", f"classes_ must be at least two distinct labels, got {classes!r}")


def _check_predict_proba(p: _Probe) -> None:
    adapter = p.fresh()
    k = len(adapter.classes_)
    proba = np.asarray(adapter.predict_proba(p.X), dtype=np.float64)
    if proba.shape != (p.n, k):
        raise _fail("predict_proba", f"shape {proba.shape}, expected ({p.n}, {k})")
    if not np.isfinite(proba).all() or proba.min() < -_TOLERANCE or proba.max() > 1 + _TOLERANCE:
        raise _fail("predict_proba", "probabilities must be finite and lie in [0, 1]")
    sums = proba.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=_TOLERANCE):
        worst = int(np.argmax(np.abs(sums - 1.0)))
        raise _fail("predict_proba", f"row {worst} sums to {sums[worst]!r}, not 1")


def _check_predict(p: _Probe) -> None:
    adapter = p.fresh()
    proba = np.asarray(adapter.predict_proba(p.X))
    labels = np.asarray(adapter.predict(p.X))
    expected = np.asarray(adapter.classes_)[np.argmax(proba, axis=1)]
    if labels.shape != (p.n,) or not np.array_equal(labels, expected):
        raise _fail("predict", "predict must be classes_[argmax(predict_proba)] for every row")


def _check_query_counting(p: _Probe) -> None:
    adapter = p.fresh()
    if adapter.queries != 0:
        raise _fail("query_counting", f"a new adapter has spent {adapter.queries} queries, not 0")
    for call, expected in ((adapter.predict_proba, p.n), (adapter.predict, 2 * p.n)):
        call(p.X)
        if adapter.queries != expected:
            raise _fail(
                "query_counting",
                f"{adapter.queries} queries after {expected} rows asked; each row counts once",
            )


def _check_budget(p: _Probe) -> None:
    budget = p.n + 1
    adapter = p.fresh(budget)
    adapter.predict_proba(p.X)
    try:
        adapter.predict_proba(p.rows(0, 2))
    except QueryBudgetExceeded:
        pass
    else:
        raise _fail("budget", f"2 rows past {p.n} of a budget of {budget} were answered")
    if adapter.queries != p.n:
        raise _fail("budget", f"a refused call was counted: {adapter.queries} queries, not {p.n}")
    adapter.predict_proba(p.rows(0, 1))  # exactly up to the budget is still answered
    if adapter.queries != budget:
        raise _fail("budget", f"{adapter.queries} queries after spending the budget of {budget}")
    for call in (adapter.predict_proba, adapter.predict):
        try:
            call(p.rows(0, 1))
        except QueryBudgetExceeded:
            continue
        raise _fail("budget", f"{call.__name__} answered past a spent budget")


def _claims_gradient(adapter: ModelAdapter) -> bool:
    return isinstance(adapter, HasGradient) and bool(getattr(adapter, "has_gradient", True))


def _check_gradient(p: _Probe) -> None:
    adapter = p.fresh()
    if not isinstance(adapter, HasGradient):
        raise _fail("gradient", f"{type(adapter).__name__} has no loss_gradient")
    y = p.y if p.y is not None else np.asarray(p.fresh().predict(p.X))
    grad = np.asarray(adapter.loss_gradient(p.X, y))
    shape = np.shape(p.X)
    if grad.shape != shape:
        raise _fail("gradient", f"loss_gradient has shape {grad.shape}, expected {shape}")
    if not np.isfinite(grad).all():
        raise _fail("gradient", "loss_gradient holds NaN or infinite values")
    if adapter.queries != p.n:
        raise _fail("gradient", f"{adapter.queries} queries for {p.n} rows' gradients")


def _check_deterministic(p: _Probe) -> None:
    first, second = p.fresh(), p.fresh()
    a, b = first.predict_proba(p.X), first.predict_proba(p.X)
    c = second.predict_proba(p.X)
    if not (np.array_equal(a, b) and np.array_equal(a, c)):
        raise _fail("deterministic", "the same rows got different probabilities")


def _refused(check: str, adapter: ModelAdapter, X: Any, expected: list[str]) -> None:
    """``X`` must be refused with a MlwardenError whose message names one of ``expected``."""
    try:
        adapter.predict_proba(X)
    except MlwardenError as exc:
        message = str(exc)
        if not any(re.search(rf"(?<!\d){re.escape(e)}(?!\d)", message) for e in expected):
            raise _fail(check, f"the error does not name what is expected: {message!r}") from exc
        return
    except Exception as exc:
        raise _fail(
            check, f"refused with {type(exc).__name__}, not an error of mlwarden.errors: {exc}"
        ) from exc
    raise _fail(check, "the input was answered")


def _check_wrong_width(p: _Probe) -> None:
    narrow: pd.DataFrame | np.ndarray
    if isinstance(p.X, pd.DataFrame):
        narrow = p.X.iloc[:, :-1]
        expected = [str(p.X.shape[1]), str(p.X.columns[-1])]
    else:
        narrow = np.asarray(p.X)[:, :-1]
        expected = [str(np.shape(p.X)[1])]
    _refused("wrong_width", p.fresh(), narrow, expected)


def _check_nan(p: _Probe) -> None:
    """A NaN is refused, or answered with valid probabilities by a model that handles it."""
    holed: pd.DataFrame | np.ndarray
    if isinstance(p.X, pd.DataFrame):
        holed = p.X.astype(np.float64)
        holed.iloc[0, 0] = np.nan
    else:
        holed = np.array(p.X, dtype=np.float64)
        holed.flat[0] = np.nan
    adapter = p.fresh()
    try:
        proba = np.asarray(adapter.predict_proba(holed), dtype=np.float64)
    except MlwardenError as exc:
        if not str(exc):
            raise _fail("nan", "the error says nothing of what is expected") from exc
        return
    except Exception as exc:
        raise _fail(
            "nan", f"refused with {type(exc).__name__}, not an error of mlwarden.errors: {exc}"
        ) from exc
    if not np.isfinite(proba).all() or not np.allclose(proba.sum(axis=1), 1.0, atol=_TOLERANCE):
        raise _fail("nan", "a NaN input was answered with probabilities that are not valid")


_CHECKS: dict[str, Callable[[_Probe], None]] = {
    "classes": _check_classes,
    "predict_proba": _check_predict_proba,
    "predict": _check_predict,
    "query_counting": _check_query_counting,
    "budget": _check_budget,
    "gradient": _check_gradient,
    "deterministic": _check_deterministic,
    "wrong_width": _check_wrong_width,
    "nan": _check_nan,
}


def check_adapter(adapter_factory: AdapterFactory, X: Any, y: Any = None) -> list[str]:
    """Run the adapter contract's checks on fresh adapters; raise on the first one broken.

    Checks, in order: ``classes``, ``predict_proba`` (shape ``(n, k)``, values in [0, 1], rows
    sum to 1), ``predict`` (``classes_[argmax(predict_proba)]``), ``query_counting`` (each row
    counts once), ``budget`` (a call past the budget raises ``QueryBudgetExceeded``, is not
    counted, and nothing is answered past the budget), ``gradient`` (only for an adapter that
    offers ``loss_gradient``: the input's shape, finite, one query per row), ``deterministic``,
    ``wrong_width`` (one column fewer is refused with a ``MlwardenError`` naming the expected
    width or the missing column) and ``nan`` (a NaN is refused with a ``MlwardenError``, or
    answered with valid probabilities by a model that handles missing values).

    Parameters
    ----------
    adapter_factory
        Builds a new adapter over the model under test with the query budget it is given
        (None: no budget); it is called once or twice per check.
    X
        At least two rows the model accepts (a 2-D array or a DataFrame of numbers).
    y
        Labels of ``X`` for the gradient check; None: the adapter's own predictions.

    Returns
    -------
    list of str
        The names of the checks run (``gradient`` only where the adapter offers it).

    Raises
    ------
    AssertionError
        A check failed; the message starts ``check_adapter: <check>:``.
    """
    probe = _Probe(adapter_factory, X, y)
    if probe.n < 2 or np.ndim(X) != 2:
        raise _fail("inputs", f"X must be 2-D with at least two rows, got shape {np.shape(X)}")
    ran = []
    for name, check in _CHECKS.items():
        if name == "gradient" and not _claims_gradient(probe.fresh()):
            continue
        check(probe)
        ran.append(name)
    return ran
