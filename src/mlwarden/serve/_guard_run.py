"""Each guard's ``on_error`` applied in one place.

A guard that cannot decide is counted (``mlwarden_guard_errors``), then either refuses the
request (``closed``: a :class:`~mlwarden.errors.GuardError`, answered 503, unless the guard
names its own refusal) or lets it through, recorded as failed open (``open``: the response
carries ``X-Mlwarden-Fail-Open`` and the decision record says which guards).
"""

from collections.abc import Callable
from typing import TypeVar

from mlwarden.errors import GuardError
from mlwarden.serve._config import OnError
from mlwarden.serve._metrics import ServerMetrics

T = TypeVar("T")


class GuardRun:
    """One request's pass through the guards; ``fail_open`` lists those that failed open."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics
        self.fail_open: list[str] = []

    def failed(
        self,
        guard: str,
        on_error: OnError,
        refusal: Exception | None = None,
        cause: BaseException | None = None,
    ) -> None:
        """Count ``guard``'s failure, then refuse with ``refusal`` (closed; by default a
        ``GuardError``) or record that the request went on without it (open)."""
        self.metrics.guard_errors.labels(guard=guard, outcome=on_error).inc()
        if on_error == "closed":
            raise (refusal if refusal is not None else GuardError(guard)) from cause
        self.fail_open.append(guard)

    def run(
        self,
        guard: str,
        on_error: OnError,
        step: Callable[[], T],
        on_open: Callable[[Exception], T],
    ) -> T:
        """``step()``; should it raise, fail as ``on_error`` says, answering ``on_open(error)``
        when the guard fails open."""
        try:
            return step()
        except Exception as exc:
            self.failed(guard, on_error, cause=exc)
            return on_open(exc)
