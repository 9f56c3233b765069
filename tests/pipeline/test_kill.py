"""A run killed with SIGKILL leaves no half-written report and no worker process behind."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import FAST_SPEC

REPORT_FILES = {"report.json", "report.html", "report.sarif", "report.junit.xml"}

# The real command line, with one function wrapped so that the process kills itself there.
_CLI = """
import os, signal, sys
{patch}
from mlwarden.cli import entrypoint
sys.argv = ["mlwarden", "run", sys.argv[1], "--store", sys.argv[2]]
entrypoint()
"""

# Killed once the first report file is written: the old writer left report.json alone there.
_KILL_WHILE_WRITING_THE_REPORT = """
import pathlib
original = pathlib.Path.write_text
def write_text(self, *args, **kwargs):
    written = original(self, *args, **kwargs)
    if self.name.startswith("report."):
        os.kill(os.getpid(), signal.SIGKILL)
    return written
pathlib.Path.write_text = write_text
"""

# Killed right after the grid search: its loky workers are alive and idle, as after any fit.
_KILL_AFTER_THE_GRID_SEARCH = """
import mlwarden.pipeline._search as search
original = search.grid_search
def grid_search(*args, **kwargs):
    fitted = original(*args, **kwargs)
    me = str(os.getpid())
    children = [p for p in os.listdir("/proc") if p.isdigit() and _parent(p) == me]
    with open("workers.txt", "w") as f:
        f.write(" ".join(children))
    os.kill(os.getpid(), signal.SIGKILL)
    return fitted
def _parent(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[1]
    except OSError:
        return None
search.grid_search = grid_search
"""


def _killed_run(tmp_path: Path, patch: str, spec: str = FAST_SPEC) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(spec)
    script = _CLI.format(patch=textwrap.dedent(patch))
    # Output to a file, not a pipe: orphaned workers would hold a pipe open and stall the wait.
    with (tmp_path / "output.txt").open("w") as output:
        done = subprocess.run(
            [sys.executable, "-c", script, str(spec_file), str(tmp_path / "store")],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    assert done.returncode == -signal.SIGKILL, (tmp_path / "output.txt").read_text()


def _report_folders(tmp_path: Path) -> list[Path]:
    reports = tmp_path / "store" / "reports" / "german"
    return sorted(reports.iterdir()) if reports.exists() else []


def test_a_kill_while_the_report_is_written_leaves_no_partial_report_folder(
    tmp_path: Path,
) -> None:
    _killed_run(tmp_path, _KILL_WHILE_WRITING_THE_REPORT)
    assert [p.name for p in _report_folders(tmp_path) if not p.name.startswith(".")] == []
    rerun = subprocess.run(
        [sys.executable, "-c", _CLI.format(patch=""), "spec.yaml", "store"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    (folder,) = _report_folders(tmp_path)  # the killed writer's temporary folder is gone too
    assert {p.name for p in folder.iterdir()} == REPORT_FILES


def _still_alive_after(pids: list[int], seconds: float) -> list[int]:
    """Which of ``pids`` (not children of this process) have not ended within ``seconds``."""
    fds: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            fds[os.pidfd_open(pid)] = pid
    deadline = time.monotonic() + seconds
    try:
        while fds and (left := deadline - time.monotonic()) > 0:
            for fd in select.select(list(fds), [], [], left)[0]:
                del fds[fd]
                os.close(fd)
        return sorted(fds.values())
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs Linux pidfd_open")
def test_a_killed_run_leaves_no_training_worker_alive(tmp_path: Path) -> None:
    _killed_run(tmp_path, _KILL_AFTER_THE_GRID_SEARCH, FAST_SPEC.replace("n_jobs: 1", "n_jobs: 2"))
    workers = [int(pid) for pid in (tmp_path / "workers.txt").read_text().split()]
    assert workers, "the grid search started no worker process"
    try:
        # A bound far above the workers' half-second watch, far below loky's 300 s idle timeout.
        assert _still_alive_after(workers, 30) == []
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
