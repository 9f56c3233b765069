"""Demo pipeline wall time, cold (empty store) and warm (every step a cache hit), and the ratio.

Run by hand: ``.venv/bin/python bench/pipeline.py [--repeat 3]``. Both are measured in the same
run on the same machine, twice over: as a user runs them (the ``mlwarden demo`` console script,
interpreter start-up included) and in-process (the executor and report alone).
Targets on a 2-core machine: cold under 3 minutes, warm under 5% of cold.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="warm runs to take the median of")
    args = parser.parse_args()
    print(f"targets: cold < {COLD_TARGET_S:.0f} s, warm < {WARM_TARGET_RATIO:.0%} of cold")
    _measure("mlwarden demo (CLI)", _cli, args.repeat)
    _measure("executor in-process", _in_process, args.repeat)


if __name__ == "__main__":
    main()
