"""Tamper with a real store the way someone with write access would; count what is caught.

Run by hand: ``.venv/bin/python bench/tamper.py [--trials 20] [--quick] [--seed 0]``.
It builds one embedded store by running the tests' fast German Credit pipeline twice (two
model versions, so an old version can be replayed), with the signing key directory
(``MLWARDEN_KEY_DIR``) outside the store. Then, per attack class (``_tamper_attacks.py``), it
runs N trials, each on a fresh copy of that store with the attack at a seeded random position,
and runs the defender's commands as a user would:

- ``verify``: ``mlwarden lineage verify``;
- ``witness``: ``mlwarden lineage verify --witness FILE`` against a checkpoint exported from the
  store before any attack (``mlwarden lineage checkpoint --export``), where the CLI has it;
- ``show``: ``mlwarden models show german@latest``;
- ``load``: ``mlwarden audit --model german@latest --checks performance``, which verifies and
  loads the model and measures its held-out ROC AUC (a gate failure there still means loaded).

``mlwarden serve`` is not started: its start-up verifies through the same registry code as
``show`` and ``load``, and starting uvicorn per trial would take most of the time budget.

The first trial of every class runs each command in a subprocess; the others call the same
``mlwarden.cli.main`` in this process (the console script's own code path, several times
faster), with an exception escaping it counted exactly as a traceback. ``--subprocess`` runs
every trial in subprocesses.

The table: per class, trials, how many each defender caught (non-zero exit), clean refusals
(exit 4 or 5, one line, no traceback) and tracebacks ("Traceback" on stderr, or exit 1 that is
not an audit gate failure), over all commands run. Classes needing a feature the code does not
have yet (a ``CHECKPOINT`` file, ``verify --witness``) print "n/a (feature missing)". The last
line states the goal: every class caught in 100% of trials (by ``verify --witness`` for the
attacks only a witness can see), and 0 tracebacks. Exit status 1 when the goal is missed.
PostgreSQL stores are not covered: this bench attacks the embedded (SQLite) store.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _tamper_attacks import CLASSES, AttackClass, Ctx
from _tamper_rewrite import constant_model

REF = "german@latest"
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
    C: [{grid}]
  cv: 3
  scoring: roc_auc
  n_jobs: 1
checks:
  - check: performance_floor
    metric: roc_auc
    min: 0.7
gate:
  mode: fail-closed
register:
  name: german
"""
_CLI = [sys.executable, "-c", "from mlwarden.cli import entrypoint; entrypoint()"]
_ENV_DROPPED = (
    "MLWARDEN_STORE",
    "MLWARDEN_DB_URL",
    "MLWARDEN_TRUST",
    "MLWARDEN_SIGNING_KEY",
    "MLWARDEN_SIGNING_KEY_FILE",
)


@dataclass
class Outcome:
    """What one command did."""

    rc: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def traceback(self) -> bool:
        """A crash: a traceback on stderr, or exit 1 that is not an audit gate failure."""
        gate_failed = self.rc == 1 and "FAILED:" in self.stderr
        return "Traceback" in self.stderr or (self.rc == 1 and not gate_failed)

    @property
    def caught(self) -> bool:
        """The command did not accept the store: any exit but 0 or a gate failure."""
        return self.rc != 0 and not (self.rc == 1 and "FAILED:" in self.stderr)

    @property
    def clean(self) -> bool:
        """A refusal as designed: exit 4 or 5, one line (verify's "also:" lines aside)."""
        lines = [ln for ln in self.stderr.splitlines() if ln.strip() and "also:" not in ln]
        return self.rc in (4, 5) and not self.traceback and len(lines) == 1


def _run_subprocess(args: list[str], cwd: Path) -> Outcome:
    began = time.perf_counter()
    done = subprocess.run([*_CLI, *args], cwd=cwd, capture_output=True, text=True, check=False)
    return Outcome(done.returncode, done.stdout, done.stderr, time.perf_counter() - began)


def _run_in_process(args: list[str], cwd: Path) -> Outcome:
    """``mlwarden.cli.main(args)`` here; an escaping exception is printed as Python would."""
    from mlwarden.cli import main

    out, err = io.StringIO(), io.StringIO()
    began = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(args)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except Exception:
            traceback.print_exc()
            rc = 1
    return Outcome(rc, out.getvalue(), err.getvalue(), time.perf_counter() - began)


@dataclass(frozen=True)
class Defender:
    """One command a user runs to check a store; ``args`` returns None where it cannot run."""

    name: str
    needs: frozenset[str]
    args: list[str]


DEFENDERS = [
    Defender("verify", frozenset(), ["lineage", "verify", "--store", "{store}"]),
    Defender(
        "witness",
        frozenset({"witness"}),
        ["lineage", "verify", "--store", "{store}", "--witness", "{witness}"],
    ),
    Defender("show", frozenset(), ["models", "show", REF, "--store", "{store}"]),
    Defender(
        "load",
        frozenset(),
        [
            *("audit", "--model", REF, "--checks", "performance", "--on-inconclusive", "pass"),
            *("--store", "{store}", "--out", "{out}"),
        ],
    ),
]


@dataclass
class Tally:
    """One class's counts over its trials."""

    trials: int = 0
    caught: Counter[str] = field(default_factory=Counter)
    caught_any: int = 0
    runs: int = 0
    clean: int = 0
    refused_not_clean: int = 0
    tracebacks: int = 0
    missed_on: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    auc: list[float] = field(default_factory=list)


def _features(cwd: Path) -> set[str]:
    """Which defences the code at hand has: ``--witness`` on verify; a CHECKPOINT is per store."""
    found: set[str] = set()
    helped = _run_subprocess(["lineage", "verify", "--help"], cwd)
    if "--witness" in helped.stdout:
        found.add("witness")
    return found


def _spec(folder: Path, grid: str) -> Path:
    path = folder / f"spec-{grid.replace(', ', '-')}.yaml"
    path.write_text(SPEC.format(grid=grid))
    return path


def _last_seq(store: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(store / "lineage.db")
    try:
        return int(conn.execute("SELECT max(seq) FROM records").fetchone()[0])
    finally:
        conn.close()


def _build(root: Path, features: set[str]) -> tuple[Path, Ctx]:
    """The store every trial copies: two registered versions; the context the attacks use."""
    from mlwarden.lineage import LineageStore
    from mlwarden.models import ModelRegistry

    base = root / "base"
    older: bytes | None = None
    older_seq: int | None = None
    for i, grid in enumerate(("0.1, 1.0", "0.01, 0.5")):
        made = _run_subprocess(["run", str(_spec(root, grid)), "--store", str(base)], root)
        if made.rc != 0:
            sys.exit(f"building the store failed (exit {made.rc}):\n{made.stderr[-2000:]}")
        if i == 0 and (base / "CHECKPOINT").exists():
            older, older_seq = (base / "CHECKPOINT").read_bytes(), _last_seq(base)
    if (base / "CHECKPOINT").exists():
        features.add("checkpoint")
    if any(p.is_file() for p in (base / "keys").rglob("*")):
        features.add("keys in the store")
    if "witness" in features:
        exported = _run_subprocess(
            ["lineage", "checkpoint", "--store", str(base), "--export", str(root / "witness")],
            root,
        )
        if exported.rc != 0:
            sys.exit(f"exporting the witness failed (exit {exported.rc}): {exported.stderr}")
    lineage = LineageStore(base)
    try:
        version = ModelRegistry(lineage).get(REF)
        model_sha = version.manifest.model_sha256
        model = lineage.read_artifact(model_sha)
    finally:
        lineage.close()
    constants = (constant_model(model, positive=True), constant_model(model, positive=False))
    ctx = Ctx(REF.split("@")[0], model_sha, constants, root / "keys", older, older_seq)
    return base, ctx


def _auc(out: Path) -> float | None:
    """The held-out ROC AUC the audit measured, from its report."""
    import json

    try:
        report = json.loads((out / "report.json").read_text())
        return float(report["checks"][0]["value"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _trial(
    klass: AttackClass,
    base: Path,
    ctx: Ctx,
    root: Path,
    rng: random.Random,
    features: set[str],
    in_process: bool,
    tally: Tally,
) -> None:
    store = root / "trial"
    if store.exists():
        shutil.rmtree(store)
    shutil.copytree(base, store, symlinks=True)
    ctx.notes.clear()
    klass.attack(store, rng, ctx)
    run = _run_in_process if in_process else _run_subprocess
    caught: set[str] = set()
    for defender in DEFENDERS:
        if not defender.needs <= features:
            continue
        out = root / "audit"
        shutil.rmtree(out, ignore_errors=True)
        fill = {"store": str(store), "witness": str(root / "witness"), "out": str(out)}
        outcome = run([a.format(**fill) for a in defender.args], root)
        tally.runs += 1
        if outcome.caught:
            caught.add(defender.name)
            tally.caught[defender.name] += 1
        if outcome.traceback:
            tally.tracebacks += 1
            if len(tally.examples) < 3:
                tail = outcome.stderr.strip().splitlines()[-1:] or [f"exit {outcome.rc}"]
                tally.examples.append(f"{defender.name}: {tail[0][:160]}")
        elif outcome.clean:
            tally.clean += 1
        elif outcome.caught:
            tally.refused_not_clean += 1
            if len(tally.examples) < 3:
                tally.examples.append(
                    f"{defender.name} exit {outcome.rc}: {outcome.stderr.strip()[:160]!r}"
                )
        if defender.name == "load" and not outcome.caught:
            auc = _auc(out)
            if auc is not None:
                tally.auc.append(auc)
    tally.trials += 1
    if caught:
        tally.caught_any += 1
    else:
        tally.missed_on.update(ctx.notes or ["-"])
    shutil.rmtree(store)
    gc.collect()  # the CLI leaves its engines to the collector; free their file handles now


def _pct(n: int, of: int) -> str:
    return f"{n}/{of} {100 * n / of:3.0f}%" if of else "-"


def _goal(klass: AttackClass, tally: Tally) -> bool:
    hits = tally.caught["witness"] if klass.witness_only else tally.caught_any
    return hits == tally.trials and tally.tracebacks == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per attack class")
    parser.add_argument("--quick", action="store_true", help="3 trials per class")
    parser.add_argument("--seed", type=int, default=0, help="seed of the attack positions")
    parser.add_argument(
        "--subprocess", action="store_true", help="every trial in subprocesses (slower)"
    )
    parser.add_argument("--only", default="", help="comma list of class names to run")
    args = parser.parse_args()
    trials = 3 if args.quick else args.trials
    if os.environ.get("MLWARDEN_TEST_POSTGRES_URL"):
        print("PostgreSQL: not covered by this bench; it attacks the embedded SQLite store")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mlwarden-tamper-") as tmp:
        root = Path(tmp)
        for name in _ENV_DROPPED:
            os.environ.pop(name, None)
        os.environ["MLWARDEN_KEY_DIR"] = str(root / "keys")  # the user's, outside the store
        features = _features(root)
        base, ctx = _build(root, features)
        clean = Tally()
        for defender in DEFENDERS:  # the untouched store must pass every check
            if defender.needs <= features:
                fill = {"store": str(base), "witness": str(root / "witness")}
                fill["out"] = str(root / "audit0")
                o = _run_subprocess([a.format(**fill) for a in defender.args], root)
                if o.caught:
                    sys.exit(f"the untouched store fails {defender.name}: {o.stderr[-500:]}")
        clean.auc.extend(a for a in [_auc(root / "audit0")] if a is not None)
        untouched = clean.auc[0] if clean.auc else float("nan")
        print(
            f"store: 2 versions of german, {_last_seq(base)} records, built in "
            f"{time.perf_counter() - began:.0f} s; untouched audit ROC AUC "
            f"{untouched:.3f}; features: "
            f"{', '.join(sorted(features)) or 'none'}"
        )
        header = (
            f"{'class':<20} {'trials':>6} {'verify':>12} {'witness':>12} {'show':>12} "
            f"{'load':>12} {'caught':>12} {'clean err':>10} {'tracebacks':>10}  goal"
        )
        print(header)
        print("-" * len(header))
        only = {c.strip() for c in args.only.split(",") if c.strip()}
        results: list[tuple[AttackClass, Tally | None]] = []
        timing = {"subprocess": [0.0, 0], "in-process": [0.0, 0]}
        for klass in CLASSES:
            if only and klass.name not in only:
                continue
            missing = klass.needs - features
            if missing:
                print(f"{klass.name:<20} n/a (feature missing: {', '.join(sorted(missing))})")
                results.append((klass, None))
                continue
            tally = Tally()
            for i in range(trials):
                rng = random.Random(f"{args.seed}:{klass.name}:{i}")
                in_process = i > 0 and not args.subprocess
                t0 = time.perf_counter()
                _trial(klass, base, ctx, root, rng, features, in_process, tally)
                slot = timing["in-process" if in_process else "subprocess"]
                slot[0] += time.perf_counter() - t0
                slot[1] += 1
            results.append((klass, tally))
            n = tally.trials
            witness = _pct(tally.caught["witness"], n) if "witness" in features else "n/a"
            print(
                f"{klass.name:<20} {n:>6} {_pct(tally.caught['verify'], n):>12} {witness:>12} "
                f"{_pct(tally.caught['show'], n):>12} {_pct(tally.caught['load'], n):>12} "
                f"{_pct(tally.caught_any, n):>12} {tally.clean:>4}/{tally.runs:<5} "
                f"{tally.tracebacks:>10}  {'ok' if _goal(klass, tally) else 'MISSED'}",
                flush=True,
            )
            notes = []
            if tally.missed_on and tally.missed_on != Counter({"-": tally.missed_on["-"]}):
                notes.append(
                    "missed on " + ", ".join(f"{k} x{v}" for k, v in tally.missed_on.items())
                )
            if tally.auc and any(abs(a - untouched) > 0.01 for a in tally.auc):
                notes.append(
                    f"model loaded and audited: ROC AUC {min(tally.auc):.3f}-"
                    f"{max(tally.auc):.3f} (untouched {untouched:.3f})"
                )
            if tally.refused_not_clean:
                notes.append(f"{tally.refused_not_clean} refusal(s) not one clean line")
            notes.extend(tally.examples)
            for note in notes:
                print(f"{'':<20}   {note}")
        ran = [(k, t) for k, t in results if t is not None]
        missed = [k.name for k, t in ran if not _goal(k, t)]
        crashes = sum(t.tracebacks for _, t in ran)
        skipped = [k.name for k, t in results if t is None]
        per = {k: f"{v[0] / v[1]:.2f} s/trial ({v[1]})" for k, v in timing.items() if v[1]}
        print(
            f"time: {time.perf_counter() - began:.0f} s; "
            + ", ".join(f"{k} {v}" for k, v in per.items())
        )
        print(
            "goal: every class caught in 100% of trials (rollback/rewrite with the key: by "
            "verify --witness), 0 tracebacks: "
            + ("MET" if not missed and not crashes else "MISSED")
            + f" ({len(ran) - len(missed)}/{len(ran)} classes met, {crashes} tracebacks"
            + (f"; missed: {', '.join(missed)}" if missed else "")
            + (f"; n/a: {', '.join(skipped)}" if skipped else "")
            + ")"
        )
    sys.exit(1 if missed or crashes else 0)


if __name__ == "__main__":
    main()
