"""Each guard's ``on_error`` applied in one place.

A guard that cannot decide is counted (``mlwarden_guard_errors``), then either refuses the
request (``closed``: a :class:`~mlwarden.errors.GuardError`, answered 503, unless the guard
names its own refusal) or lets it through, recorded as failed open (``open``: the response
carries ``X-Mlwarden-Fail-Open`` and the decision record says which guards).
"""

from collections.abc import Callable
from contextvars import ContextVar
from typing import TypeVar

from mlwarden.errors import GuardError
from mlwarden.serve._config import OnError
from mlwarden.serve._metrics import ServerMetrics

T = TypeVar("T")


_current: ContextVar["GuardRun | None"] = ContextVar("mlwarden_guard_run", default=None)


class GuardRun:
    """One request's pass through the guards; ``fail_open`` lists those that failed open.

    The newest run in this context is :meth:`current`: state shared between replicas reports
    a Redis failure into the request it happened in.
    """

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics
        self.fail_open: list[str] = []
        _current.set(self)

    @staticmethod
    def current() -> "GuardRun | None":
        """The run of the request being handled in this context, if one started."""
        return _current.get()

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
        if guard not in self.fail_open:
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
