"""Big tables: peak memory and rows/s of ``mlwarden validate`` and ``mlwarden run``, 1-20 M rows.

Run by hand: ``.venv/bin/python bench/bigtable.py [--sizes 1,5,20] [--skip-run] [--baseline]``.

The tables are real rows resampled: the bundled UCI Phishing Websites rows (23 features and the
label), drawn with replacement and written as CSV, with one bad value per million rows (a text
typo in a numeric column, late in each million) so the quarantine has work to do. Each
measurement runs in a fresh process under GNU time; peak RSS is its maximum resident set.

- ``validate``: ``mlwarden validate TABLE --schema S`` (the bundled phishing schema), which reads
  the CSV in batches. With ``--baseline`` the same check as one whole-table pass (the
  functions ``validate`` used before: ``read_csv_table`` then ``validate_table``) runs in its
  own process beside it, and the ratios are printed. Goal: peak RSS flat in table size,
  <= 1 GB at 20 M rows; throughput >= the whole-table pass.
- ``run``: ``mlwarden run`` on a spec over the CSV (streaming ingest, validate and split;
  logistic regression trained on ``train.max_rows`` = 200,000 rows; the performance checks).
  Its peak RSS grows with the held-out split, which evaluation reads whole.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RSS_GOAL_MB = 1024
_BAD_EVERY = 1_000_000

_BASELINE = """
import sys, time
from pathlib import Path
from mlwarden import data
from mlwarden.data import TableSchema, read_csv_table, validate_table
t = time.perf_counter()
frame = read_csv_table(Path(sys.argv[1]).read_bytes(), sys.argv[1])
accepted, quarantined, report = validate_table(frame, TableSchema.from_yaml(Path(sys.argv[2])))
quarantined.to_csv(sys.argv[3], index=False)
print(report.rows_in, report.rows_rejected)
"""

_SPEC = """
name: bigtable
data:
  path: {csv}
  label: Result
  positive: phishing
  schema: {schema}
  max_rejected_fraction: 0.001
split:
  test_size: 0.2
  seed: 1
train:
  estimator: logistic_regression
  max_rows: 200000
  n_jobs: 2
  seed: 1
checks:
  - check: performance_floor
    metric: f1
    min: 0.85
gate:
  mode: warn
register:
  name: bigtable
"""


def _table(rows: int, folder: Path) -> Path:
    """A CSV of ``rows`` resampled phishing rows, with a typo late in each million."""
    from mlwarden import data

    frame = data.load("phishing").frame
    path = folder / f"phishing_{rows // 1_000_000}M.csv"
    if path.exists():
        return path
    rng = np.random.default_rng(rows)
    chunk = 1_000_000
    with path.open("w") as out:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            part = frame.iloc[rng.integers(0, len(frame), n)].astype(
                {"having_IPhaving_IP_Address": object}
            )
            part.iloc[n - 7, part.columns.get_loc("having_IPhaving_IP_Address")] = "1O"  # letter O
            part.to_csv(out, index=False, header=start == 0)
    return path


def _measure(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of ``command`` in a fresh process."""
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *command], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):  # validate exits 1 when rows are quarantined
        sys.exit(f"{command[:3]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return seconds, peak_kb / 1024, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,5,20", help="millions of rows, comma-separated")
    parser.add_argument("--skip-run", action="store_true", help="validate only")
    parser.add_argument("--baseline", action="store_true", help="also the whole-table pass")
    parser.add_argument(
        "--baseline-max", type=int, default=5, help="largest size (M rows) to run it on"
    )
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "bigtable")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    from mlwarden import data

    schema = args.folder / "phishing_schema.yaml"
    schema.write_text(data.load("phishing").schema.to_yaml())
    print(f"{'rows':>5} {'what':<22} {'seconds':>8} {'rows/s':>10} {'peak RSS MB':>12}")
    for millions in (int(s) for s in args.sizes.split(",")):
        rows = millions * 1_000_000
        csv = _table(rows, args.folder)
        out = args.folder / f"out_{millions}M"
        seconds, peak, _ = _measure(
            [str(bin_dir / "mlwarden"), "validate", str(csv), "--schema", str(schema),
             "--max-rejected", "0.001", "--out", str(out)]
        )  # fmt: skip
        verdict = "ok" if peak <= RSS_GOAL_MB else "OVER"
        print(f"{millions:>4}M {'validate (batches)':<22} {seconds:8.1f} {rows / seconds:10,.0f} "
              f"{peak:12,.0f}  {verdict} (goal <= {RSS_GOAL_MB})")  # fmt: skip
        if args.baseline and millions <= args.baseline_max:
            base_s, base_peak, _ = _measure(
                [sys.executable, "-c", _BASELINE, str(csv), str(schema), str(out / "whole.csv")]
            )
            print(f"{millions:>4}M {'validate (whole table)':<22} {base_s:8.1f} "
                  f"{rows / base_s:10,.0f} {base_peak:12,.0f}  -> batches: "
                  f"{base_s / seconds:.2f}x rows/s, {peak / base_peak:.2f}x RSS")  # fmt: skip
        if not args.skip_run:
            spec = args.folder / f"spec_{millions}M.yaml"
            spec.write_text(_SPEC.format(csv=csv, schema=schema))
            store = args.folder / f"store_{millions}M"
            seconds, peak, _ = _measure(
                [str(bin_dir / "mlwarden"), "run", str(spec), "--store", str(store)]
            )
            print(f"{millions:>4}M {'run (cold store)':<22} {seconds:8.1f} {rows / seconds:10,.0f} "
                  f"{peak:12,.0f}")  # fmt: skip
        sys.stdout.flush()


if __name__ == "__main__":
    main()
