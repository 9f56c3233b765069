"""Kill -9 a pipeline run at random instants; check that nothing is left half-done.

Run by hand: ``.venv/bin/python bench/crash.py [--trials 24] [--seed 0]``. Two reference runs
of the fast German Credit spec (the tests' fast spec, with ``n_jobs: 2`` so the grid search
starts worker processes) through the ``mlwarden run`` command; the second, timed, gives each
phase's window: start-up, each step, and the report written after ``run_ended``. Each trial
then starts the same command on a fresh store, in its own session, and aims at one phase, the
phases taken in turn so that every step is aimed at: it sends SIGKILL a random delay (uniform
over that phase's length in the reference run) after the output line that ends the phase before
(after the process start, for start-up). Aiming from the output, not from the start, hits
steps of a few milliseconds; the phase actually hit, read from the killed run's records, is
printed with the instant.
After each kill it checks:

- ``mlwarden lineage verify`` exits 0 ("-" when the kill came before the store existed);
- no report folder is partial (every ``reports/<pipeline>/<run>/`` holds all four files);
- no process of the killed run's session (its loky workers, loky's resource tracker) is alive
  10 s after the kill (the seconds until the last one ended are printed);
- a rerun completes (exit 0); the steps it took from the cache (those the killed run
  completed) are printed;
- exactly one model version is registered, and no temporary report folder is left over.

It prints one row per trial and a summary; the exit status is 1 if any check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """\
name: german
data:
  dataset: german
  label: credit
  positive: bad
split:
  test_size: 0.3
  seed: 3
train:
  estimator: logistic_regression
  params:
    max_iter: 500
  grid:
    C: [0.1, 1.0]
  cv: 3
  scoring: roc_auc
  n_jobs: 2
checks:
  - check: performance_floor
    metric: roc_auc
    min: 0.7
gate:
  mode: fail-closed
register:
  name: german
"""
REPORT_FILES = {"report.json", "report.html", "report.sarif", "report.junit.xml"}
ORPHAN_WAIT_S = 10.0
_CLI = [sys.executable, "-c", "from mlwarden.cli import entrypoint; entrypoint()"]


def _cli(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*_CLI, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _session_members(sid: int) -> list[int]:
    """Live processes whose session is ``sid`` (the killed run and whatever it started)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            members.append(int(entry))
    return members


def _phase(store: Path) -> str:
    """Where the killed run was: start-up, a step, between steps, or after ``run_ended``."""
    from mlwarden.lineage import LineageStore

    if not (store / "lineage.db").exists():
        return "start-up"
    lineage = LineageStore(store)
    try:
        runs = lineage.records("run_started")
        if not runs:
            return "start-up"
        run_id = runs[-1].subject
        if lineage.records("run_ended", subject=run_id):
            return "after run_ended"
        started = [r for r in lineage.records("execution_started") if r.payload["run_id"] == run_id]
        for record in reversed(started):
            if not lineage.records("execution_ended", subject=record.subject):
                return str(record.payload["step"])
        return "between steps"
    finally:
        lineage.close()


def _after_rerun(store: Path) -> tuple[int, int]:
    """Model versions registered, and steps the rerun took from the cache."""
    from mlwarden.lineage import LineageStore
    from mlwarden.models import ModelRegistry

    lineage = LineageStore(store)
    try:
        rerun = lineage.records("run_started")[-1].subject
        cached = len(lineage.records("cache_hit", subject=rerun))
        return len(ModelRegistry(lineage).versions("german")), cached
    finally:
        lineage.close()


def _partial_reports(store: Path) -> tuple[int, int]:
    """Report folders missing a file, and temporary folders left beside them."""
    partial = temporary = 0
    for folder in (store / "reports").glob("*/*"):
        if folder.name.startswith("."):
            temporary += 1
        elif {p.name for p in folder.iterdir()} != REPORT_FILES:
            partial += 1
    return partial, temporary


def _wait_gone(sid: int, seconds: float) -> tuple[list[int], float]:
    """Poll until no process of session ``sid`` is left or ``seconds`` pass."""
    began = time.monotonic()
    while (left := _session_members(sid)) and time.monotonic() - began < seconds:
        time.sleep(0.05)
    return left, time.monotonic() - began


def _await_line(run: subprocess.Popen[bytes], anchor: str) -> None:
    """Read the run's output until ``anchor`` appears or the run ends."""
    assert run.stdout is not None
    fd, seen = run.stdout.fileno(), b""
    while anchor.encode() not in seen and run.poll() is None:
        if select.select([fd], [], [], 0.05)[0]:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return
            seen += chunk


def _trial(folder: Path, anchor: str | None, offset: float) -> dict[str, object]:
    """Start a run, SIGKILL it ``offset`` seconds after its output shows ``anchor``; check."""
    folder.mkdir()
    (folder / "spec.yaml").write_text(SPEC)
    began = time.monotonic()
    run = subprocess.Popen(
        [*_CLI, "run", "spec.yaml", "--store", "store"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if anchor is not None:
        _await_line(run, anchor)
    finished, workers, kill_at = True, 0, time.monotonic() - began
    try:
        run.wait(timeout=offset)
    except subprocess.TimeoutExpired:
        finished = False
        workers = len(_session_members(run.pid)) - 1
        kill_at = time.monotonic() - began
        run.send_signal(signal.SIGKILL)
        run.wait()
    assert run.stdout is not None
    run.stdout.close()
    orphans, gone_s = _wait_gone(run.pid, ORPHAN_WAIT_S)
    for pid in orphans:  # counted above; not left to run on
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    phase = "finished" if finished else _phase(folder / "store")
    partial, _ = _partial_reports(folder / "store")
    # Killed before the store was made: there is nothing to verify ("-").
    stored = (folder / "store").exists()
    verify = _cli("lineage", "verify", "--store", "store", cwd=folder).wait() if stored else "-"
    rerun = _cli("run", "spec.yaml", "--store", "store", cwd=folder).wait()
    _, temporary = _partial_reports(folder / "store")
    versions, cached = _after_rerun(folder / "store")
    return {
        "kill_at": kill_at if not finished else float("nan"),
        "phase": phase,
        "workers": workers,
        "orphans": len(orphans),
        "gone_s": gone_s,
        "partial": partial,
        "verify": verify,
        "rerun": rerun,
        "cached": cached,
        "versions": versions,
        "temporary": temporary,
    }


def _ok(row: dict[str, object]) -> bool:
    return (
        row["verify"] in (0, "-")
        and row["rerun"] == 0
        and row["versions"] == 1
        and row["partial"] == 0
        and row["orphans"] == 0
        and row["temporary"] == 0
    )


def _windows(store: Path, began: float, ended: float) -> list[tuple[str, float, float]]:
    """Each phase of a completed run as (name, start, end) in seconds from the process start."""
    from mlwarden.lineage import LineageStore

    lineage = LineageStore(store)
    try:
        at = {r.kind + r.subject: r.created_at.timestamp() - began for r in lineage.records()}
        run = lineage.records("run_started")[-1].subject
        phases = [("start-up", 0.0, at["run_started" + run])]
        for start in lineage.records("execution_started"):
            step = str(start.payload["step"])
            phases.append(
                (step, at[start.kind + start.subject], at["execution_ended" + start.subject])
            )
        phases.append(("report", at["run_ended" + run], ended - began))
        return phases
    finally:
        lineage.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=24, help="kills (at least 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill instants")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="mlwarden-crash-") as tmp:
        root = Path(tmp)
        (root / "ref").mkdir()
        (root / "ref" / "spec.yaml").write_text(SPEC)
        for store in ("first", "second"):  # the first warms the file cache; the second is timed
            began = time.time()
            if _cli("run", "spec.yaml", "--store", store, cwd=root / "ref").wait() != 0:
                sys.exit("the reference run failed")
            ended = time.time()
        windows = _windows(root / "ref" / "second", began, ended)
        print(f"reference run: {ended - began:.1f} s, start-up included; kills per phase, in turn:")
        print("  " + ", ".join(f"{n} {a:.2f}-{b:.2f} s" for n, a, b in windows))
        header = (
            f"{'#':>3} {'aimed at':<10} {'kill at':>8} {'hit':<16} {'workers':>7} {'orphans':>7} "
            f"{'gone in':>8} {'partial':>7} {'verify':>6} {'rerun':>5} {'cached':>6} "
            f"{'versions':>8} {'tmp left':>8}  ok"
        )
        print(header)
        rows = []
        for i in range(args.trials):
            k = i % len(windows)
            name, start, end = windows[k]
            if k == 0:  # start-up: from the process start
                anchor, offset = None, rng.uniform(start, end)
            else:  # from the line that ends the phase before, as long as the phase lasted
                anchor = "pipeline german" if k == 1 else f" {windows[k - 1][0]:<12} executed"
                offset = rng.uniform(0.0, end - windows[k - 1][2])
            row = _trial(root / f"t{i}", anchor, offset)
            rows.append(row)
            print(
                f"{i:>3} {name:<10} {row['kill_at']:>7.2f}s {row['phase']!s:<16} "
                f"{row['workers']:>7} "
                f"{row['orphans']:>7} {row['gone_s']:>7.2f}s {row['partial']:>7} "
                f"{row['verify']!s:>6} {row['rerun']:>5} {row['cached']:>6} {row['versions']:>8} "
                f"{row['temporary']:>8}  {'yes' if _ok(row) else 'NO'}",
                flush=True,
            )
    failed = [i for i, row in enumerate(rows) if not _ok(row)]
    phases = sorted({str(row["phase"]) for row in rows})
    worst = max(float(str(row["gone_s"])) for row in rows)
    print(
        f"{len(rows) - len(failed)}/{len(rows)} trials ok; phases hit: {', '.join(phases)}; "
        f"longest a process outlived a kill: {worst:.2f} s (limit {ORPHAN_WAIT_S:.0f} s)"
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
