"""Model-file scanners on the scan corpus: detections, false alarms, crashes and throughput.

Builds the corpus of tests/models/_scan_corpus.py (malicious files whose payloads would only
create a marker file, and benign real models) in a temporary folder and runs, in one process,
mlwarden's scanner and the three anchors (picklescan, modelscan, fickling; the ``bench`` extra)
on every file. Prints per tool: malicious files detected, benign files passed, files the tool
crashed on (raised, or reported its own scan error), and MB/s over the whole corpus. Then the
peak memory (tracemalloc) and MB/s of mlwarden and picklescan on one generated ~200 MB
checkpoint-like file, and whether the marker file was ever created (it must not be).

Run by hand: ``python bench/scan.py`` (about a minute).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.models._scan_corpus import Sample, build_corpus  # noqa: E402

# A tool answers "flagged" (True), "passed" (False) or raises / reports an error ("crash").
Verdict = bool | None


def _mlwarden(path: Path) -> Verdict:
    from mlwarden.models import scan_file

    return not scan_file(path).safe


def _picklescan(path: Path) -> Verdict:
    from picklescan.scanner import scan_file_path

    result = scan_file_path(str(path))
    if result.infected_files or result.issues_count:
        return True
    return None if result.scan_err else False


def _modelscan(path: Path) -> Verdict:
    from modelscan.modelscan import ModelScan

    report = ModelScan().scan(str(path))
    if report.get("issues"):
        return True
    return None if report.get("errors") else False


def _fickling(path: Path) -> Verdict:
    import fickling

    return not fickling.is_likely_safe(str(path))


TOOLS: dict[str, Callable[[Path], Verdict]] = {
    "mlwarden": _mlwarden,
    "picklescan": _picklescan,
    "modelscan": _modelscan,
    "fickling": _fickling,
}


def _run(tool: Callable[[Path], Verdict], samples: list[Sample]) -> dict[str, float]:
    detected = passed = crashed = 0
    size = sum(s.path.stat().st_size for s in samples)
    start = time.perf_counter()
    for sample in samples:
        try:
            verdict = tool(sample.path)
        except Exception:  # a crash is what is counted here
            verdict = None
        if verdict is None:
            crashed += 1
        elif sample.malicious and verdict:
            detected += 1
        elif not sample.malicious and not verdict:
            passed += 1
    seconds = time.perf_counter() - start
    return {
        "detected": detected,
        "passed": passed,
        "crashed": crashed,
        "mb_s": size / 1e6 / seconds,
    }


def _big_checkpoint(folder: Path) -> Path:
    """A ~200 MB torch checkpoint (zip) when torch is installed, else a joblib file."""
    path = folder / "big_checkpoint.pt"
    try:
        import torch

        state = {f"layer{i}.weight": torch.zeros(25 * 1024 * 1024 // 4) for i in range(8)}
        torch.save(state, path)
    except ImportError:
        import joblib
        import numpy as np

        joblib.dump({f"layer{i}": np.zeros(25 * 1024 * 1024 // 8) for i in range(8)}, path)
    return path


def _peak(tool: Callable[[Path], Verdict], path: Path) -> tuple[float, float, Verdict]:
    tracemalloc.start()
    start = time.perf_counter()
    verdict = tool(path)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, path.stat().st_size / 1e6 / seconds, verdict


def main() -> int:
    """Build the corpus, run every tool, print the tables; exit 1 if a goal is missed."""
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        marker = root / "MARKER"
        samples = build_corpus(root, marker)
        bad = sum(s.malicious for s in samples)
        good = len(samples) - bad
        size = sum(s.path.stat().st_size for s in samples) / 1e6
        print(f"corpus: {bad} malicious, {good} benign files, {size:.1f} MB")
        print(f"{'tool':<11} {'detected':>12} {'benign passed':>14} {'crashed':>8} {'MB/s':>8}")
        results = {}
        for name, tool in TOOLS.items():
            try:
                results[name] = r = _run(tool, samples)
            except ImportError as exc:
                print(f"{name:<11} not installed ({exc}); pip install 'mlwarden[bench]'")
                continue
            print(
                f"{name:<11} {r['detected']:>5.0f}/{bad:<6} {r['passed']:>7.0f}/{good:<6} "
                f"{r['crashed']:>8.0f} {r['mb_s']:>8.1f}"
            )
        big = _big_checkpoint(root)
        print(f"\n{big.stat().st_size / 1e6:.0f} MB checkpoint-like file ({big.name}):")
        for name in ("mlwarden", "picklescan"):
            try:
                peak, mb_s, verdict = _peak(TOOLS[name], big)
            except ImportError:
                continue
            flagged = "flagged" if verdict else "passed"
            print(f"  {name:<11} peak traced memory {peak:7.1f} MiB, {mb_s:8.1f} MB/s, {flagged}")
        print(f"\nmarker file created: {marker.exists()}")
        ours = results["mlwarden"]
        anchors = [r for n, r in results.items() if n != "mlwarden"]
        goals = {
            "100% detected": ours["detected"] == bad,
            "0 benign flagged": ours["passed"] == good,
            "no marker": not marker.exists(),
            "more detections than each anchor": all(
                ours["detected"] > r["detected"] for r in anchors
            ),
            "MB/s >= picklescan": "picklescan" not in results
            or ours["mb_s"] >= results["picklescan"]["mb_s"],
        }
        for goal, met in goals.items():
            print(f"{'met ' if met else 'MISSED'}  {goal}")
        return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
