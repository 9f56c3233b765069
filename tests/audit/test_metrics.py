"""Bootstrapped metrics are computed from confusion counts: the same numbers as scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from mlwarden.audit._metrics import as_codes, metric_value

_SKLEARN = {"precision": precision_score, "recall": recall_score, "f1": f1_score}


@pytest.mark.parametrize("name", sorted(_SKLEARN))
def test_counted_metrics_equal_scikit_learn(name):
    rng = np.random.default_rng(1)
    for _ in range(200):
        k = int(rng.integers(2, 5))
        classes = np.array(sorted(rng.choice(list("abcde"), k, replace=False)))
        n = int(rng.integers(1, 40))
        y = rng.choice(classes[: rng.integers(1, k + 1)], n)  # some classes never occur
        proba = rng.random((n, k))
        proba[:, 0] += 5 * (rng.random() < 0.3)  # sometimes one class is always predicted
        pred = classes[np.argmax(proba, axis=1)]
        positive = classes[rng.integers(0, k)] if k == 2 else None
        averaging = {"average": "binary", "pos_label": positive} if k == 2 else {"average": "macro"}
        want = _SKLEARN[name](y, pred, zero_division=0, **averaging)
        assert metric_value(name, y, proba, classes, positive) == pytest.approx(want, abs=1e-12)
        codes, index, pos = as_codes(y, classes, positive)
        assert codes.dtype.kind == "i"  # resamples then compare integers
        assert metric_value(name, codes, proba, index, pos) == pytest.approx(want, abs=1e-12)
