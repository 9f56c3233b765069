"""One error tree: every class is an MlwardenError, and each leaf is also the builtin it resembles,
so callers can catch either."""

from __future__ import annotations

import pytest

from mlwarden import errors
from mlwarden.audit import proportion_interval
from mlwarden.errors import (
    CapabilityError,
    FormatError,
    GuardError,
    MlwardenError,
    ModelError,
    ParameterError,
    UnknownNameError,
)


@pytest.mark.parametrize("name", errors.__all__)
def test_every_public_error_is_rooted_in_mlwarden_error(name: str) -> None:
    assert issubclass(getattr(errors, name), MlwardenError)


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (ParameterError, ValueError),
        (FormatError, ValueError),
        (UnknownNameError, KeyError),
        (CapabilityError, TypeError),
        (GuardError, RuntimeError),
    ],
)
def test_each_leaf_is_also_its_builtin(cls: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(cls, builtin)


def test_a_bad_argument_is_caught_as_either_class() -> None:
    with pytest.raises(ParameterError, match="successes must lie in"):
        proportion_interval(5, 3)
    with pytest.raises(ValueError, match="successes must lie in"):
        proportion_interval(5, 3)


def test_an_unknown_name_reads_as_its_message_not_a_quoted_key() -> None:
    message = "no group 'x'; groups are ['a']"
    assert str(UnknownNameError(message)) == message


def test_a_missing_capability_is_a_model_error_and_a_type_error() -> None:
    pytest.importorskip("torch")
    from mlwarden.attacks import deepsloth

    with pytest.raises(CapabilityError, match="need an EarlyExitNetwork") as info:
        deepsloth(object(), [[0.0]], eps=0.1, threshold=0.9)
    assert isinstance(info.value, ModelError)
    assert isinstance(info.value, TypeError)


def test_a_failed_guard_names_the_guard() -> None:
    assert GuardError("drift").guard == "drift"
