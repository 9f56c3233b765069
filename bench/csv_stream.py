"""Streaming CSV reading: rows/s and peak memory of ``csv_batches`` against a whole-file read.

Writes a CSV of ``--rows`` rows (default 2 M) resampled from the bundled UCI Phishing rows, then,
each in a fresh subprocess so that the peak is its own: ``read_csv_table`` on the whole file's
bytes, and iterating ``csv_batches`` over it (plus a process that only imports, the floor under
both peaks). Prints rows/s (best of ``--repeat`` runs: the machine is shared), peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and the streaming/whole ratios, and checks that
the batches add up to the whole table row for row.

Run by hand: ``python bench/csv_stream.py [--rows 2000000] [--batch 200000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


MODES = ("imports", "whole", "batches")


def write_table(path: Path, rows: int, seed: int = 0) -> None:
    """Phishing rows resampled to ``rows`` rows, written as CSV."""
    import numpy as np

    from mlwarden.data import load

    frame = load("phishing").frame
    picks = np.random.default_rng(seed).integers(0, len(frame), rows)
    frame.iloc[picks].to_csv(path, index=False)


def measure(mode: str, path: Path, batch: int) -> dict[str, float]:
    """Read ``path`` one way in this process; its time, rows and peak RSS."""
    import resource

    from mlwarden.data import csv_batches, read_csv_table

    start = time.perf_counter()
    rows = 0
    if mode == "whole":
        rows = len(read_csv_table(path.read_bytes(), path.name))
    elif mode == "batches":
        rows = sum(len(part) for part in csv_batches(path, path.name, rows=batch))
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"rows": rows, "seconds": seconds, "peak_mib": peak_mib}


def _same_rows(path: Path, batch: int) -> bool:
    """Whether the batches, put together, are the whole-file table (checked on a 200 k prefix)."""
    import pandas as pd

    from mlwarden.data import csv_batches, read_csv_table

    with path.open("rb") as source:
        head = b"".join(line for _, line in zip(range(200_001), source, strict=False))
    prefix = path.with_name("prefix.csv")
    prefix.write_bytes(head)
    whole = read_csv_table(head, prefix.name)
    streamed = pd.concat(list(csv_batches(prefix, prefix.name, rows=batch // 10)))
    try:
        pd.testing.assert_frame_equal(streamed, whole)
    except AssertionError:
        return False
    return True


def _in_subprocess(mode: str, path: Path, batch: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", mode, "--file", str(path), "--batch", str(batch)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--measure", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--write", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        write_table(args.file, args.write)
        return
    if args.measure:
        print(json.dumps(measure(args.measure, args.file, args.batch)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "phishing_big.csv"
        # in its own process: a child starts with its parent's peak RSS (Linux keeps ru_maxrss
        # across fork and exec), so this process stays small until the measures are taken
        subprocess.run(
            [sys.executable, __file__, "--write", str(args.rows), "--file", str(path)], check=True
        )
        size_mib = path.stat().st_size / 2**20
        print(f"{args.rows:,} rows, {size_mib:.0f} MiB, batches of {args.batch:,} rows")
        results = {
            mode: min(
                (_in_subprocess(mode, path, args.batch) for _ in range(args.repeat)),
                key=lambda r: r["seconds"],
            )
            for mode in MODES
        }
        for mode, r in results.items():
            rate = f"{r['rows'] / r['seconds']:12,.0f} rows/s" if r["rows"] else " " * 19
            print(f"{mode:8s} {rate}  {r['seconds']:6.1f} s  peak RSS {r['peak_mib']:7.0f} MiB")
        whole, batches = results["whole"], results["batches"]
        floor = results["imports"]["peak_mib"]
        print(
            f"batches/whole: speed {whole['seconds'] / batches['seconds']:.2f}x, "
            f"peak RSS {batches['peak_mib'] / whole['peak_mib']:.2f}x "
            f"({(batches['peak_mib'] - floor) / (whole['peak_mib'] - floor):.2f}x above imports)"
        )
        same = _same_rows(path, args.batch)
        print(f"batches equal the whole-file table: {same}")
        if not same or batches["rows"] != whole["rows"]:
            sys.exit(1)


if __name__ == "__main__":
    main()
