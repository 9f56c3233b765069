"""Schema inference in batches against the whole table: time ratio, peak memory, same schema.

Run by hand: ``.venv/bin/python bench/schema_infer.py [--rows 1000000] [--batch 200000]``.
Real Phishing and Adult rows, resampled to ``--rows`` rows plus a unique ``row_id`` column (so
the uniqueness hashes are exercised), are made batch by batch from a seed. Each way runs in a
fresh subprocess: ``whole`` builds every batch, concatenates them and calls ``infer_schema``;
``batched`` builds one batch at a time and feeds ``SchemaInference``. The time counts inference
only (not making rows); peak RSS is the subprocess's, and the baseline is its RSS before the
first batch; times are the best of ``--repeat`` runs. Goal: batched/whole time ratio near 1,
batched peak RSS flat in ``--rows``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time

TABLES = ("phishing", "adult")
WAYS = ("whole", "batched")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _batch(source, index: int, start: int, rows: int):  # type: ignore[no-untyped-def]
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng([0, index])
    frame = source.iloc[rng.integers(0, len(source), rows)].reset_index(drop=True)
    frame["row_id"] = np.arange(start, start + rows, dtype=np.int64)
    frame.index = pd.RangeIndex(start, start + rows)
    return frame


def child(mode: str, table: str, rows: int, batch: int) -> dict[str, float | str]:
    """Infer one table's schema one way; what it cost."""
    import pandas as pd

    from mlwarden.data import SchemaInference, infer_schema, load

    dataset = load(table)
    source = dataset.frame
    base = _rss_mb()
    starts = range(0, rows, batch)
    spent = 0.0
    if mode == "whole":
        frame = pd.concat(
            [_batch(source, i, s, min(batch, rows - s)) for i, s in enumerate(starts)]
        )
        began = time.perf_counter()
        schema = infer_schema(frame, label=dataset.label)
        spent = time.perf_counter() - began
    else:
        inference = SchemaInference(dataset.label)
        for i, s in enumerate(starts):
            part = _batch(source, i, s, min(batch, rows - s))
            began = time.perf_counter()
            inference.update(part)
            spent += time.perf_counter() - began
            del part
        began = time.perf_counter()
        schema = inference.result()
        spent += time.perf_counter() - began
    digest = hashlib.sha256(schema.model_dump_json().encode()).hexdigest()[:16]
    return {"seconds": spent, "base_mb": base, "peak_mb": _rss_mb(), "schema": digest}


def run(mode: str, table: str, rows: int, batch: int) -> dict[str, float | str]:
    """``child`` in a fresh interpreter, so peak RSS is its own."""
    args = ["--child", mode, "--table", table, "--rows", str(rows), "--batch", str(batch)]
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    )
    result: dict[str, float | str] = json.loads(done.stdout)
    return result


def main() -> int:
    """Print one line per table: times, ratio, peak RSS of each way, and whether they agree."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3, help="best time of this many runs")
    parser.add_argument("--table", choices=TABLES)
    parser.add_argument("--child", choices=WAYS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.table, args.rows, args.batch)))
        return 0
    print(f"{args.rows:,} rows, batches of {args.batch:,}")
    agree = True
    for table in TABLES:
        runs = [
            (
                run("whole", table, args.rows, args.batch),
                run("batched", table, args.rows, args.batch),
            )
            for _ in range(args.repeat)
        ]
        whole = min((w for w, _ in runs), key=lambda r: float(r["seconds"]))
        batched = min((b for _, b in runs), key=lambda r: float(r["seconds"]))
        same = len({r["schema"] for pair in runs for r in pair}) == 1
        agree = agree and same
        print(
            f"{table:9} whole {whole['seconds']:.2f}s  batched {batched['seconds']:.2f}s  "
            f"ratio (batched/whole) {float(batched['seconds']) / float(whole['seconds']):.2f}  "
            f"peak RSS whole {whole['peak_mb']:.0f} MB  batched {batched['peak_mb']:.0f} MB  "
            f"(baseline {whole['base_mb']:.0f} MB)  same schema: {'yes' if same else 'NO'}"
        )
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
