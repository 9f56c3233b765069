"""Demo pipeline wall time, cold (empty store) and warm (every step a cache hit), and the ratio;
and the train step's overhead over a plain ``GridSearchCV``.

Run by hand: ``.venv/bin/python bench/pipeline.py [--repeat 3] [--only warm|train]``. Cold and
warm are measured in the same run on the same machine, twice over: as a user runs them (the
``mlwarden demo`` console script, interpreter start-up included) and in-process (the executor
and report alone). Targets on a 2-core machine: cold under 3 minutes, warm under 5% of cold.

The train ratio: in each of ``--repeat`` fresh interpreters, the demo spec (with ``n_jobs: 1``,
without its adversarial training and the evasion check it serves) runs on an empty store, then
plain ``GridSearchCV``s (the same grid, scoring and shuffled stratified folds, ``n_jobs=1``) fit
the same training rows: one over the same model pipeline
the step trains (schema-driven imputation, then the estimator), one over the bare estimator.
Printed: the train step's time over each, the median over the repeats, in wall time (the
target: at most 1.1) and in CPU time (steadier on a busy machine). The first measures what the
step adds (reading inputs, saving the model); the second adds the preprocessing every model
carries. The modules a plain script imports anyway are imported before anything is timed.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

COLD_TARGET_S = 180.0
WARM_TARGET_RATIO = 0.05
TRAIN_TARGET_RATIO = 1.1

# One measurement in a fresh interpreter: the train step inside a pipeline run, then plain
# GridSearchCVs on the rows that step trained on: over the same model pipeline (preprocessing
# and estimator, as build_estimator makes it) and over the bare estimator. Prints wall and CPU
# seconds: "<step wall> <step cpu> <same wall> <same cpu> <bare wall> <bare cpu>".
_TRAIN_CHILD = """
import sys, tempfile, time
from importlib import resources
from pathlib import Path

import sklearn.model_selection as ms, sklearn.ensemble, sklearn.metrics  # a plain script's

from mlwarden.data import TableSchema
from mlwarden.lineage import LineageStore
from mlwarden.pipeline import LocalExecutor, load_spec
from mlwarden.pipeline._estimators import MODEL_STEP, build_estimator, estimator_class
from mlwarden.pipeline._io import label_parts, read_json, read_table


class Clock:
    def step_started(self, step):
        if step == "train":
            self.wall, self.cpu = time.perf_counter(), time.process_time()

    def step_message(self, step, message):
        pass

    def step_finished(self, step, status, seconds):
        if step == "train":
            self.wall = time.perf_counter() - self.wall
            self.cpu = time.process_time() - self.cpu


with resources.as_file(resources.files("mlwarden").joinpath("_specs", "phishing.yaml")) as path:
    spec = load_spec(path)
# The grid search alone: adversarial training (train.harden) is work a plain GridSearchCV does
# not do, so it and the evasion check it is there for are left out.
t = spec.train.model_copy(update={"n_jobs": 1, "harden": None})
checks = [c for c in spec.checks if c.check != "evasion"]
spec = spec.model_copy(update={"train": t, "checks": checks})
with tempfile.TemporaryDirectory() as tmp:
    store = LineageStore(Path(tmp) / "store")
    clock = Clock()
    result = LocalExecutor(store, clock).run(spec)
    assert result.status == "completed", result.error
    step = next(s for s in result.steps if s.step == "train")
    info = read_json(store.read_artifact(result.artifacts["ingest.info"]))
    schema = TableSchema.model_validate(read_json(store.read_artifact(step.inputs["schema"])))
    X, y = label_parts(read_table(store.read_artifact(step.inputs["train"])), info["label"])
    store.close()
same = (
    build_estimator(t.estimator, dict(t.params), schema, t.seed),
    {f"{MODEL_STEP}__{k}": v for k, v in t.grid.items()},
)
bare = (estimator_class(t.estimator)(**t.params, random_state=t.seed), dict(t.grid))
times = [clock.wall, clock.cpu]
for model, grid in (same, bare):
    search = ms.GridSearchCV(
        model, grid, scoring=t.scoring, n_jobs=1, refit=True,
        cv=ms.StratifiedKFold(t.cv, shuffle=True, random_state=t.seed),
    )
    wall, cpu = time.perf_counter(), time.process_time()
    search.fit(X, y)
    times += [time.perf_counter() - wall, time.process_time() - cpu]
print(*times)
"""


def _cli(folder: Path) -> float:
    exe = Path(sys.executable).parent / "mlwarden"
    start = time.perf_counter()
    subprocess.run([str(exe), "demo"], cwd=folder, check=True, capture_output=True)
    return time.perf_counter() - start


def _in_process(folder: Path) -> float:
    from mlwarden.lineage import LineageStore
    from mlwarden.pipeline import LocalExecutor, load_spec, write_run_report

    spec_file = resources.files("mlwarden").joinpath("_specs", "phishing.yaml")
    start = time.perf_counter()
    store = LineageStore(folder / ".mlwarden")
    with resources.as_file(spec_file) as path:
        spec = load_spec(path, memo=store.root / "cache" / "specs")
    result = LocalExecutor(store).run(spec)
    write_run_report(store, spec, result)
    elapsed = time.perf_counter() - start
    assert result.status == "completed", result.error
    store.close()
    return elapsed


def _measure(name: str, fn: object, repeat: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cold = fn(folder)  # type: ignore[operator]
        warm = statistics.median(fn(folder) for _ in range(repeat))  # type: ignore[operator]
    ratio = warm / cold
    cold_ok = "ok" if cold < COLD_TARGET_S else "MISSED"
    warm_ok = "ok" if ratio < WARM_TARGET_RATIO else "MISSED"
    print(
        f"{name:<22} cold {cold:7.2f} s ({cold_ok})   warm (median of {repeat}) {warm:6.3f} s   "
        f"warm/cold {ratio:6.2%} ({warm_ok})",
        flush=True,
    )
    return cold, warm


def _train_ratio(repeat: int) -> None:
    ratios: dict[str, list[float]] = {
        "same wall": [],
        "same cpu": [],
        "bare wall": [],
        "bare cpu": [],
    }
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, "-c", _TRAIN_CHILD], check=True, capture_output=True, text=True
        )
        step_wall, step_cpu, same_wall, same_cpu, bare_wall, bare_cpu = map(
            float, done.stdout.split()[-6:]
        )
        ratios["same wall"].append(step_wall / same_wall)
        ratios["same cpu"].append(step_cpu / same_cpu)
        ratios["bare wall"].append(step_wall / bare_wall)
        ratios["bare cpu"].append(step_cpu / bare_cpu)
        print(
            f"  wall/cpu seconds: train step {step_wall:6.2f}/{step_cpu:6.2f}   plain "
            f"GridSearchCV, same model pipeline {same_wall:6.2f}/{same_cpu:6.2f}, bare "
            f"estimator {bare_wall:6.2f}/{bare_cpu:6.2f}",
            flush=True,
        )
    for baseline in ("same", "bare"):
        wall = statistics.median(ratios[f"{baseline} wall"])
        cpu = statistics.median(ratios[f"{baseline} cpu"])
        ok = "ok" if wall <= TRAIN_TARGET_RATIO else "MISSED"
        name = "train / plain " + ("(same model)" if baseline == "same" else "(bare est.)")
        print(
            f"{name:<30} median of {repeat}: wall {wall:5.2f} ({ok}, target <= "
            f"{TRAIN_TARGET_RATIO})   cpu {cpu:5.2f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="runs to take the median of")
    parser.add_argument("--only", choices=["warm", "train"], help="measure only this part")
    args = parser.parse_args()
    if args.only != "train":
        print(f"targets: cold < {COLD_TARGET_S:.0f} s, warm < {WARM_TARGET_RATIO:.0%} of cold")
        _measure("mlwarden demo (CLI)", _cli, args.repeat)
        _measure("executor in-process", _in_process, args.repeat)
    if args.only != "warm":
        _train_ratio(args.repeat)


if __name__ == "__main__":
    main()
