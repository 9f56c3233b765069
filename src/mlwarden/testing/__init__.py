"""Conformance suites for third-party adapters and detectors, as scikit-learn's ``check_estimator``.

:func:`check_adapter` checks a model adapter's contract (probabilities, predictions, query
counting, budgets, gradients, determinism, bad input), and :func:`check_detector` an extraction
detector's. Both raise ``AssertionError`` naming the check that failed, so they run in any test.
"""

from mlwarden.testing._adapter import check_adapter
from mlwarden.testing._detector import check_detector

__all__ = ["check_adapter", "check_detector"]
