"""PGD adversarial training makes the Digits model robust, and the robust_accuracy check sees it."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from mlwarden.audit import CheckContext, run_check  # noqa: E402
from mlwarden.models import (  # noqa: E402
    SklearnAdapter,
    TorchAdapter,
    load_digits_split,
    train_digits_model,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _context(adversarial_eps: float | None) -> CheckContext:
    split = load_digits_split()
    module = train_digits_model(adversarial_eps=adversarial_eps, epochs=30)
    X_train, X_test = pd.DataFrame(split.X_train), pd.DataFrame(split.X_test)
    y_train, y_test = pd.Series(split.y_train), pd.Series(split.y_test)
    return CheckContext(TorchAdapter(module, classes=range(10)), X_train, y_train, X_test,
                        y_test, None)  # fmt: skip


PARAMS = {"eps": 0.1, "min_accuracy": 0.6, "epsilons": [0.05, 0.2], "rows": 300, "steps": 20}


def test_adversarial_training_passes_where_standard_training_fails() -> None:
    plain = run_check("robust_accuracy", PARAMS, _context(None))
    hardened = run_check("robust_accuracy", PARAMS, _context(0.1))
    assert plain.value is not None and hardened.value is not None
    assert not plain.passed and hardened.passed
    assert hardened.value > plain.value + 0.2
    curve = hardened.details["curve"]
    assert curve["x"] == [0.0, 0.05, 0.1, 0.2]
    assert curve["y"] == sorted(curve["y"], reverse=True)


def test_a_model_without_gradients_is_not_measured() -> None:
    from sklearn.dummy import DummyClassifier

    X = pd.DataFrame({"a": [0.0, 1.0] * 10})
    y = pd.Series([0, 1] * 10)
    ctx = CheckContext(SklearnAdapter(DummyClassifier().fit(X, y)), X, y, X, y, 1)
    finding = run_check("robust_accuracy", {"eps": 0.1, "min_accuracy": 0.5}, ctx)
    assert not finding.passed and finding.value is None and finding.queries == 0
