"""Process-pool workers that do not outlive the run that started them.

joblib's loky workers wait for their next task up to an idle timeout (300 s, longer while a fit
runs) and nothing in them notices that their parent is gone: a run killed with SIGKILL, which
cannot run any handler, left them holding their memory for many minutes. Each worker started
here runs a daemon thread that polls its parent's pid and ends the worker once the parent has
died (the worker is then re-parented, so ``os.getppid()`` changes), whatever killed it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

# How often a worker looks for its parent: the longest a worker outlives a killed run.
POLL_SECONDS = 0.5


def _watch(parent: int) -> None:
    event = threading.Event()
    while os.getppid() == parent:
        event.wait(POLL_SECONDS)
    os._exit(1)  # no cleanup to run: the run that wanted the result is gone


def exit_with_parent(parent: int) -> None:
    """Worker initializer: end this process as soon as process ``parent`` is gone."""
    if os.getppid() != parent:  # the parent died before this worker started
        os._exit(1)
    threading.Thread(
        target=_watch, args=(parent,), name="mlwarden-parent-watch", daemon=True
    ).start()


@contextlib.contextmanager
def workers_die_with_this_process() -> Iterator[None]:
    """joblib calls inside use loky workers that exit when this process does, even by SIGKILL.

    Only where loky is the backend in force (joblib's default): a backend chosen around the
    call (Ray, Dask, threads) is left as it is, with its own worker lifetime.
    """
    from joblib import parallel_config
    from joblib._parallel_backends import LokyBackend
    from joblib.parallel import get_active_backend

    if not isinstance(get_active_backend()[0], LokyBackend):
        yield
        return
    with parallel_config(backend="loky", initializer=exit_with_parent, initargs=(os.getpid(),)):
        yield
