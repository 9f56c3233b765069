"""Waiting on another process: poll a condition against a deadline, and find a free port.

For conditions only an outside process can make true (a server answering, Prometheus firing
an alert, a replica seeing a revocation), which no event in this process signals.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T],
    timeout: float,
    what: str,
    done: Callable[[T], bool] = bool,
    every: float = 0.01,
) -> T:
    """``check()``'s first answer that is ``done``; fails after ``timeout`` s naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if done(got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last: {got!r}")
        time.sleep(every)


def seconds_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """How long ``check`` took to hold (see :func:`wait_until`)."""
    start = time.monotonic()
    wait_until(check, timeout, what)
    return time.monotonic() - start


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
