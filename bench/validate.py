"""Validation throughput against pandera, and label-error detection against cleanlab.

Run by hand: ``.venv/bin/python bench/validate.py [--rows 1000000] [--label-errors]``
(needs ``pip install -e '.[bench]'``). Both libraries validate the same in-memory table of
real Adult rows, resampled to ``--rows`` rows and widened to 20 columns, against the same
constraints (types, ranges, categories, nullability, a unique key, a regex and a cross-column
rule), with 1% of rows planted bad. Each produces the same result: the clean rows and the
quarantined rows with their reasons (pandera: ``lazy=True`` validation, then the split made from
its failure cases, as a user of it would write).
Target: at least 3x pandera's rows per second. ``--label-errors`` then runs
``bench/label_errors.py`` (mlwarden's confident learning vs cleanlab on the same flipped labels).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from mlwarden import datasets
from mlwarden.data import TableSchema, validate_table

TARGET = 3.0


def make_table(rows: int, seed: int = 0) -> pd.DataFrame:
    """Adult resampled to ``rows`` rows plus five more columns, with 1% of rows planted bad."""
    rng = np.random.default_rng(seed)
    adult = datasets.load("adult").frame
    frame = adult.iloc[rng.integers(0, len(adult), rows)].reset_index(drop=True)
    frame["customer_id"] = np.arange(rows, dtype=np.int64)
    frame["email"] = [f"user{i}@example.org" for i in range(rows)]
    frame["score"] = rng.random(rows)
    frame["tenure_years"] = rng.integers(0, 40, rows)
    frame["channel"] = rng.choice(["web", "branch", "phone"], rows)
    bad = rng.choice(rows, rows // 100, replace=False)
    part = np.array_split(bad, 4)
    frame.loc[part[0], "age"] = 200
    frame.loc[part[1], "workclass"] = "Pirate"
    frame.loc[part[2], "hours_per_week"] = 500
    frame.loc[part[3], "email"] = "not an address"
    return frame


def mlwarden_schema() -> TableSchema:
    """The constraints, as an mlwarden schema."""
    declared = datasets.load("adult").schema.model_dump(mode="json", exclude_none=True)
    declared["columns"].update(
        {
            "customer_id": {"type": "integer", "min": 0, "unique": True},
            "email": {"type": "string", "regex": r"[a-z0-9.]+@[a-z0-9.]+\.[a-z]+"},
            "score": {"type": "float", "min": 0, "max": 1},
            "tenure_years": {"type": "integer", "min": 0, "max": 60},
            "channel": {"type": "category", "categories": ["web", "branch", "phone"]},
        }
    )
    declared["rules"] = [{"name": "week", "expr": "hours_per_week <= 24 * 7"}]
    return TableSchema.model_validate(declared)


def pandera_schema(schema: TableSchema) -> Any:
    """The same constraints, as a pandera schema."""
    import pandera.pandas as pa

    columns = {}
    for name, col in schema.columns.items():
        checks = []
        if col.min is not None and col.max is not None:
            checks.append(pa.Check.in_range(col.min, col.max))
        elif col.min is not None:
            checks.append(pa.Check.ge(col.min))
        elif col.max is not None:
            checks.append(pa.Check.le(col.max))
        if col.categories is not None:
            checks.append(pa.Check.isin(col.categories))
        if col.regex is not None:
            checks.append(pa.Check.str_matches(f"^(?:{col.regex})$"))
        dtype = {"integer": "int64", "float": "float64"}.get(col.type, "str")
        columns[name] = pa.Column(
            dtype if not (col.type == "integer" and col.nullable) else "float64",
            checks=checks,
            nullable=col.nullable,
            unique=col.unique,
        )
    return pa.DataFrameSchema(
        columns,
        checks=[pa.Check(lambda df: df["hours_per_week"] <= 24 * 7, name="week")],
    )


def _time(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(rows: int, repeat: int) -> None:
    import pandera.errors

    frame = make_table(rows)
    schema = mlwarden_schema()
    other = pandera_schema(schema)
    print(f"table: {rows:,} rows x {frame.shape[1]} columns, 1% planted bad", flush=True)

    _, _, report = validate_table(frame, schema)
    failures = 0

    def run_pandera() -> None:
        """Validate, then split clean and quarantined rows with their reasons, as we do."""
        nonlocal failures
        try:
            other.validate(frame, lazy=True)
            return
        except pandera.errors.SchemaErrors as exc:
            cases = exc.failure_cases.dropna(subset=["index"])
        failures = len(cases)
        reasons = (
            (cases["column"].astype(str) + ": " + cases["check"].astype(str))
            .groupby(cases["index"].astype("int64"))
            .agg("; ".join)
        )
        frame.drop(index=reasons.index)
        frame.loc[reasons.index].assign(_reasons=reasons.to_numpy())

    ours = _time(lambda: validate_table(frame, schema), repeat)
    theirs = _time(run_pandera, repeat)
    print(
        f"  mlwarden: {ours:6.2f} s  {rows / ours:12,.0f} rows/s   "
        f"({report.rows_rejected:,} rows quarantined, with reasons)"
    )
    print(
        f"  pandera:  {theirs:6.2f} s  {rows / theirs:12,.0f} rows/s   ({failures:,} failure cases)"
    )
    ratio = theirs / ours
    verdict = "met" if ratio >= TARGET else "MISSED"
    print(f"  speed-up: {ratio:.2f}x (target >= {TARGET:.0f}x: {verdict}); median of {repeat}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--label-errors",
        action="store_true",
        help="also compare label-error detection with cleanlab",
    )
    args = parser.parse_args()
    throughput(args.rows, args.repeat)
    if args.label_errors:
        import runpy
        import sys
        from pathlib import Path

        script = str(Path(__file__).with_name("label_errors.py"))
        sys.argv = [script]  # its own defaults, not this script's options
        runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
