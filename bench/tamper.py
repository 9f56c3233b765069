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

The table: per class, trials, how many each defender caught (non-zero exit); "caught", the
trials caught without a witness (by verify, show or load; a witness sees any change before its
checkpoint, so it counts only for the attacks nothing else can see: rollback to an older
CHECKPOINT, rewrite with the real key); clean refusals (exit 4 or 5, one line, no traceback)
among all refusals of the commands run; and tracebacks ("Traceback" on stderr, or exit 1 that
is not an audit gate failure). Classes needing a feature the code does not have yet (a
``CHECKPOINT`` file, ``verify --witness``, keys in the store) print "n/a (feature missing)".
The last line states the goal: every class caught in 100% of trials ("caught"), and 0
tracebacks; the exit status is 1 when it is missed.

Attack positions are seeded per class and trial (``--seed``); the store is built anew each
run, with its own times and run ids, so a position is reproducible on the same store, not
byte for byte across builds.

With ``MLWARDEN_TEST_POSTGRES_URL`` set (a database whose user may create databases), the
same table follows for a store whose records are on PostgreSQL: each copy is a fresh database
made from the built one as a template (the SQLite-file class is n/a there).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _tamper_attacks import CLASSES, AttackClass, Ctx
from _tamper_rewrite import constant_model
from _tamper_store import last, open_db

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


class Backend:
    """Where the records live: the embedded SQLite file, or a PostgreSQL database per copy.

    On PostgreSQL the store folder (artifacts, HEAD, keys) is copied as on SQLite and the
    records are copied with ``CREATE DATABASE ... TEMPLATE`` of the built store's database.
    """

    def __init__(self, admin_url: str | None) -> None:
        self.admin_url = admin_url
        self.name = "postgresql" if admin_url else "sqlite"
        self._prefix = f"mlwarden_tamper_{os.getpid()}"
        self._admin: Any = None
        self._copies = 0
        self._left: list[str] = []
        if admin_url:
            from sqlalchemy import create_engine

            self._admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")

    def url(self, database: str) -> str | None:
        """The URL of database ``<prefix>_<database>`` (None: SQLite, the file in the store)."""
        if self.admin_url is None:
            return None
        from sqlalchemy.engine import make_url

        name = f"{self._prefix}_{database}"
        return make_url(self.admin_url).set(database=name).render_as_string(False)

    def _sql(self, statement: str) -> None:
        from sqlalchemy import text

        with self._admin.connect() as conn:
            conn.execute(text(statement))

    def _drop(self, database: str) -> bool:
        """Drop a database; an autovacuum worker in it can refuse FORCE for a moment."""
        from sqlalchemy.exc import DBAPIError

        for _ in range(50):
            try:
                self._sql(f"DROP DATABASE IF EXISTS {self._prefix}_{database} WITH (FORCE)")
                return True
            except DBAPIError:
                time.sleep(0.1)
        return False

    def create_base(self) -> None:
        """An empty database for the built store."""
        if self._admin is not None:
            self._sql(f"CREATE DATABASE {self._prefix}_base")

    def copy(self, base: Path, store: Path) -> str | None:
        """A fresh copy of the built store: its folder, and on PostgreSQL a new database (URL)."""
        shutil.copytree(base, store, symlinks=True)
        if self._admin is None:
            return None
        self._copies += 1
        self._sql(f"CREATE DATABASE {self._prefix}_t{self._copies} TEMPLATE {self._prefix}_base")
        return self.url(f"t{self._copies}")

    def drop_copy(self, store: Path) -> None:
        """Remove the newest copy; connections the in-process CLI left open are ended."""
        shutil.rmtree(store)
        if self._admin is not None and not self._drop(f"t{self._copies}"):
            self._left.append(f"t{self._copies}")

    def close(self) -> None:
        """Drop every database this bench made."""
        if self._admin is not None:
            for database in [*self._left, "base"]:
                if not self._drop(database):
                    print(f"could not drop database {self._prefix}_{database}; drop it by hand")
            self._admin.dispose()


def _features(cwd: Path, backend: Backend) -> set[str]:
    """Which defences the code at hand has (``--witness`` on verify), and the backend's kind."""
    found = {backend.name}
    helped = _run_subprocess(["lineage", "verify", "--help"], cwd)
    if "--witness" in helped.stdout:
        found.add("witness")
    return found


def _spec(folder: Path, grid: str) -> Path:
    path = folder / f"spec-{grid.replace(', ', '-')}.yaml"
    path.write_text(SPEC.format(grid=grid))
    return path


def _db_args(url: str | None) -> list[str]:
    return ["--db-url", url] if url else []


def _last_seq(store: Path, url: str | None) -> int:
    with open_db(store, url, drop_triggers=False) as db:
        return last(db)[0]


def _build(root: Path, backend: Backend, features: set[str]) -> tuple[Path, Ctx]:
    """The store every trial copies: two registered versions; the context the attacks use."""
    from mlwarden.lineage import LineageStore
    from mlwarden.models import ModelRegistry

    base, url = root / "base", backend.url("base")
    backend.create_base()
    older: bytes | None = None
    older_seq: int | None = None
    for i, grid in enumerate(("0.1, 1.0", "0.01, 0.5")):
        argv = ["run", str(_spec(root, grid)), "--store", str(base), *_db_args(url)]
        made = _run_subprocess(argv, root)
        if made.rc != 0:
            sys.exit(f"building the store failed (exit {made.rc}):\n{made.stderr[-2000:]}")
        if i == 0 and (base / "CHECKPOINT").exists():
            older, older_seq = (base / "CHECKPOINT").read_bytes(), _last_seq(base, url)
    if (base / "CHECKPOINT").exists():
        features.add("checkpoint")
    if any(p.is_file() for p in (base / "keys").rglob("*")):
        features.add("keys in the store")
    if "witness" in features:
        argv = ["lineage", "checkpoint", "--store", str(base), *_db_args(url)]
        exported = _run_subprocess([*argv, "--export", str(root / "witness")], root)
        if exported.rc != 0:
            sys.exit(f"exporting the witness failed (exit {exported.rc}): {exported.stderr}")
    lineage = LineageStore(base, url=url)
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
    try:
        report = json.loads((out / "report.json").read_text())
        return float(report["checks"][0]["value"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def _check(defender: Defender, store: Path, root: Path, url: str | None) -> list[str]:
    """The command line of ``defender`` against ``store``."""
    fill = {"store": str(store), "witness": str(root / "witness"), "out": str(root / "audit")}
    return [a.format(**fill) for a in defender.args] + _db_args(url)


def _trial(
    klass: AttackClass,
    base: Path,
    ctx: Ctx,
    root: Path,
    rng: random.Random,
    features: set[str],
    in_process: bool,
    tally: Tally,
    backend: Backend,
) -> None:
    store = root / "trial"
    ctx.db_url = backend.copy(base, store)
    ctx.notes.clear()
    klass.attack(store, rng, ctx)
    run = _run_in_process if in_process else _run_subprocess
    caught: set[str] = set()
    for defender in DEFENDERS:
        if not defender.needs <= features:
            continue
        shutil.rmtree(root / "audit", ignore_errors=True)
        outcome = run(_check(defender, store, root, ctx.db_url), root)
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
            auc = _auc(root / "audit")
            if auc is not None:
                tally.auc.append(auc)
    tally.trials += 1
    # A witness sees any change before its checkpoint: it counts only where nothing else can.
    if caught & ({"witness"} if klass.witness_only else {"verify", "show", "load"}):
        tally.caught_any += 1
    else:
        tally.missed_on.update(ctx.notes or ["-"])
    gc.collect()  # the CLI leaves its engines to the collector; free their connections now
    backend.drop_copy(store)


def _pct(n: int, of: int) -> str:
    return f"{n}/{of} {100 * n / of:3.0f}%" if of else "-"


def _goal(klass: AttackClass, tally: Tally) -> bool:
    return tally.caught_any == tally.trials and tally.tracebacks == 0


def _print_row(klass: AttackClass, tally: Tally, features: set[str], untouched: float) -> None:
    n = tally.trials
    witness = _pct(tally.caught["witness"], n) if "witness" in features else "n/a"
    refusals = tally.clean + tally.refused_not_clean + tally.tracebacks
    print(
        f"{klass.name:<20} {n:>6} {_pct(tally.caught['verify'], n):>12} {witness:>12} "
        f"{_pct(tally.caught['show'], n):>12} {_pct(tally.caught['load'], n):>12} "
        f"{_pct(tally.caught_any, n):>12} {tally.clean:>5}/{refusals:<5} "
        f"{tally.tracebacks:>10}  {'ok' if _goal(klass, tally) else 'MISSED'}",
        flush=True,
    )
    notes = []
    if tally.missed_on and set(tally.missed_on) != {"-"}:
        where = ", ".join(f"{k} x{v}" for k, v in tally.missed_on.items())
        notes.append(f"missed on {where}")
    if tally.auc and any(abs(a - untouched) > 0.01 for a in tally.auc):
        notes.append(
            f"model loaded and audited: ROC AUC {min(tally.auc):.3f}-{max(tally.auc):.3f} "
            f"(untouched {untouched:.3f})"
        )
    if tally.refused_not_clean:
        notes.append(f"{tally.refused_not_clean} refusal(s) not one clean line")
    notes.extend(tally.examples)
    for note in notes:
        print(f"{'':<20}   {note}")


def _run_backend(
    backend: Backend, trials: int, seed: int, every_subprocess: bool, only: set[str]
) -> bool:
    """Build the store, run every class's trials, print the table; whether the goal was met."""
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mlwarden-tamper-") as tmp:
        root = Path(tmp)
        os.environ["MLWARDEN_KEY_DIR"] = str(root / "keys")  # the user's, outside the store
        features = _features(root, backend)
        base, ctx = _build(root, backend, features)
        untouched = float("nan")
        for defender in DEFENDERS:  # the untouched store must pass every check
            if defender.needs <= features:
                o = _run_subprocess(_check(defender, base, root, backend.url("base")), root)
                if o.caught:
                    sys.exit(f"the untouched store fails {defender.name}: {o.stderr[-500:]}")
                untouched = _auc(root / "audit") or untouched
        print(
            f"[{backend.name}] store: 2 versions of german, {_last_seq(base, backend.url('base'))} "
            f"records, built in {time.perf_counter() - began:.0f} s; untouched audit ROC AUC "
            f"{untouched:.3f}; features: {', '.join(sorted(features))}"
        )
        header = (
            f"{'class':<20} {'trials':>6} {'verify':>12} {'witness':>12} {'show':>12} "
            f"{'load':>12} {'caught':>12} {'clean/refused':>13} {'tracebacks':>10}  goal"
        )
        print(header)
        print("-" * len(header))
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
                rng = random.Random(f"{seed}:{klass.name}:{i}")
                in_process = i > 0 and not every_subprocess
                t0 = time.perf_counter()
                _trial(klass, base, ctx, root, rng, features, in_process, tally, backend)
                slot = timing["in-process" if in_process else "subprocess"]
                slot[0] += time.perf_counter() - t0
                slot[1] += 1
            results.append((klass, tally))
            _print_row(klass, tally, features, untouched)
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
        f"goal [{backend.name}]: every class caught in 100% of trials without a witness "
        "(rollback and rewrite with the key: by verify --witness), 0 tracebacks: "
        + ("MET" if not missed and not crashes else "MISSED")
        + f" ({len(ran) - len(missed)}/{len(ran)} classes met, {crashes} tracebacks"
        + (f"; missed: {', '.join(missed)}" if missed else "")
        + (f"; n/a: {', '.join(skipped)}" if skipped else "")
        + ")",
        flush=True,
    )
    return not missed and not crashes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per attack class")
    parser.add_argument("--quick", action="store_true", help="3 trials per class")
    parser.add_argument("--seed", type=int, default=0, help="seed of the attack positions")
    parser.add_argument(
        "--subprocess", action="store_true", help="every trial in subprocesses (slower)"
    )
    parser.add_argument("--only", default="", help="comma list of class names to run")
    parser.add_argument(
        "--backend",
        choices=("all", "sqlite", "postgresql"),
        default="all",
        help="all: SQLite, then PostgreSQL if MLWARDEN_TEST_POSTGRES_URL is set",
    )
    args = parser.parse_args()
    trials = 3 if args.quick else args.trials
    only = {c.strip() for c in args.only.split(",") if c.strip()}
    postgres = os.environ.get("MLWARDEN_TEST_POSTGRES_URL")
    for name in _ENV_DROPPED:
        os.environ.pop(name, None)
    met = True
    if args.backend == "postgresql" and not postgres:
        sys.exit("--backend postgresql needs MLWARDEN_TEST_POSTGRES_URL")
    urls = {"all": [None, postgres] if postgres else [None], "sqlite": [None]}
    for admin_url in urls.get(args.backend, [postgres]):
        backend = Backend(admin_url)
        try:
            met = _run_backend(backend, trials, args.seed, args.subprocess, only) and met
        finally:
            backend.close()
    if not postgres and args.backend == "all":
        print(
            "PostgreSQL: skipped (set MLWARDEN_TEST_POSTGRES_URL to a database whose user "
            "may create databases)"
        )
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
