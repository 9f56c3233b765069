"""Grid-search workers watch their parent; a backend chosen by the caller is left alone."""

from __future__ import annotations

from joblib import parallel_config
from joblib._parallel_backends import LokyBackend, ThreadingBackend
from joblib.parallel import get_active_backend

from mlwarden.pipeline._workers import exit_with_parent, workers_die_with_this_process


def test_the_default_loky_backend_gets_workers_that_watch_their_parent() -> None:
    with workers_die_with_this_process():
        backend = get_active_backend()[0]
    assert isinstance(backend, LokyBackend)
    assert backend.backend_kwargs["initializer"] is exit_with_parent


def test_a_backend_chosen_around_the_call_is_kept() -> None:
    with parallel_config(backend="threading"), workers_die_with_this_process():
        assert isinstance(get_active_backend()[0], ThreadingBackend)
