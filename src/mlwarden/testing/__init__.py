"""Conformance suites for third-party adapters and detectors, as scikit-learn's ``check_estimator``.

:func:`check_adapter` checks a model adapter's contract (probabilities, predictions, query
counting, budgets, gradients, determinism, bad input); ``check_detector`` checks an extraction
detector's. Both raise ``AssertionError`` naming the check that failed, so they run in any test.
"""

from typing import Any

from mlwarden.testing._adapter import check_adapter

__all__ = ["check_adapter", "check_detector"]


def __getattr__(name: str) -> Any:
    """``check_detector`` on first use: it loads the serving layer's detectors."""
    if name == "check_detector":
        from importlib import import_module

        return import_module("mlwarden.testing._detector").check_detector
    raise AttributeError(f"module 'mlwarden.testing' has no attribute {name!r}")
