"""Calibration of the default checks: healthy baselines against planted weaknesses.

Run by hand: ``.venv/bin/python bench/calibration.py [--datasets phishing,adult,german]
[--adult-rows 12000] [--json out.json]``. For each bundled tabular dataset it fits the
calibration models of :mod:`mlwarden.pipeline._calibration` (regularised logistic regression,
gradient boosting and, on phishing, a booster hardened by adversarial training; planted: a
shortcut column, a leaked label, a fully grown tree, a memorising forest and, on phishing, the
unhardened booster under the bundled threat model) and runs every default check group of
``mlwarden audit --checks`` on each. It prints one Markdown table per dataset (the README's
calibration table): each cell is the verdict, the measured value and its 95% interval; a
planted weakness's own check is marked with an asterisk. The last lines count healthy models
failed and planted weaknesses missed by the check made for them: both should be zero.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from mlwarden.pipeline._calibration import (
    WEAKNESSES,
    CalibrationRow,
    calibrate,
    groups_for,
    models_for,
)


def _cell(row: CalibrationRow) -> str:
    mark = "*" if row.weakness_of == row.group else ""
    if row.value is None:
        return f"{mark}{row.verdict}"
    interval = "" if row.interval is None else f" [{row.interval[0]:.2f}, {row.interval[1]:.2f}]"
    return f"{mark}{row.verdict} {row.value:.3f}{interval}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="phishing,adult,german")
    parser.add_argument("--adult-rows", type=int, default=12000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="Also write every row as JSON here.")
    args = parser.parse_args()

    rows: list[CalibrationRow] = []
    start = time.perf_counter()
    for dataset in args.datasets.split(","):
        limit = args.adult_rows if dataset == "adult" else None
        found = calibrate(
            dataset, rows=limit, seed=args.seed,
            progress=lambda m: print(f"  {m}", file=sys.stderr, flush=True),
        )  # fmt: skip
        rows += found
        groups = groups_for(dataset)
        print(f"\n### {dataset}" + (f" ({limit:,} rows)" if limit else "") + "\n")
        print("| model | " + " | ".join(groups) + " |")
        print("|---|" + "---|" * len(groups))
        for model in models_for(dataset):
            cells = {r.group: _cell(r) for r in found if r.model == model}
            kind = "planted" if model in WEAKNESSES else "healthy"
            print(f"| {model} ({kind}) | " + " | ".join(cells[g] for g in groups) + " |")
    healthy_failed = [
        r for r in rows if r.kind == "healthy" and r.verdict == "fail" and r.group != "evasion"
    ]
    missed = [r for r in rows if r.weakness_of == r.group and r.verdict != "fail"]
    print(f"\n{len(rows)} findings in {time.perf_counter() - start:.0f} s")
    print(f"healthy models failed (evasion aside): {len(healthy_failed)}")
    for r in healthy_failed:
        print(f"  {r.dataset} {r.model} {r.group}: {r.message}")
    print(f"planted weaknesses not failed by their own check: {len(missed)}")
    for r in missed:
        print(f"  {r.dataset} {r.model} {r.group}: {r.message}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump([r.model_dump(mode="json") for r in rows], handle, indent=1)


if __name__ == "__main__":
    main()
