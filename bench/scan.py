"""Model-file scanners on the scan corpus: detections, false alarms, crashes and throughput.

Builds the corpus of tests/models/_scan_corpus.py (malicious files whose payloads would only
create a marker file, and benign real models) in a temporary folder and runs, in one process,
mlwarden's scanner and the three anchors (picklescan, modelscan, fickling; the ``bench`` extra)
on every file. Prints per tool: malicious files detected, benign files passed, files the tool
crashed on (raised, or reported its own scan error), and MB/s over the whole corpus and over
the files picklescan reads to the end (the fastest of 15 passes, the tools taking turns).
Then the peak memory (tracemalloc) and MB/s of mlwarden and picklescan on generated ~200 MB
checkpoint-like files (joblib, and torch zip when torch is installed), and whether the marker
file was ever created (it must not be). Exits 1 when a goal of issue 14 is missed.

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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.models._scan_corpus import Sample, build_corpus

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


def _verdict(tool: Callable[[Path], Verdict], path: Path) -> Verdict:
    try:
        return tool(path)
    except ImportError:
        raise
    except Exception:  # a crash is what is counted here
        return None


def _counts(tool: Callable[[Path], Verdict], samples: list[Sample]) -> dict[str, Any]:
    """Detections, benign passes and crashes; the files the tool crashed on by name."""
    detected = passed = 0
    crashed: set[Path] = set()
    for sample in samples:
        verdict = _verdict(tool, sample.path)
        if verdict is None:
            crashed.add(sample.path)
        elif sample.malicious and verdict:
            detected += 1
        elif not sample.malicious and not verdict:
            passed += 1
    return {"detected": detected, "passed": passed, "crashed": crashed}


def _throughput(
    tools: dict[str, Callable[[Path], Verdict]], samples: list[Sample], repeats: int = 15
) -> dict[str, float]:
    """MB/s per tool: the fastest of ``repeats`` passes, the tools taking turns in each round.

    A pass over the corpus takes tens of milliseconds, so on a shared machine one pass measures
    mostly noise; taking turns exposes every tool to the same load, and the counting pass
    before has warmed them all alike (imports, caches).
    """
    size = sum(s.path.stat().st_size for s in samples)
    best = dict.fromkeys(tools, float("inf"))
    for _ in range(repeats):
        for name, tool in tools.items():
            start = time.perf_counter()
            for sample in samples:
                _verdict(tool, sample.path)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: size / 1e6 / seconds for name, seconds in best.items()}


def _big_files(folder: Path) -> list[Path]:
    """~200 MB checkpoint-like files: a joblib dump and (with torch) a torch.save zip.

    The payload is random, so that no compression or sparse-file effect helps either tool.
    """
    import joblib
    import numpy as np

    rng = np.random.default_rng(0)
    layers = {f"layer{i}.weight": rng.random(25 * 1024 * 1024 // 8) for i in range(8)}
    paths = [folder / "big_checkpoint.joblib"]
    joblib.dump(layers, paths[0])
    try:
        import torch
    except ImportError:
        return paths
    paths.append(folder / "big_checkpoint.pt")
    torch.save({k: torch.from_numpy(v) for k, v in layers.items()}, paths[-1])
    return paths


def _peak(tool: Callable[[Path], Verdict], path: Path) -> tuple[float, float, Verdict]:
    tracemalloc.start()
    start = time.perf_counter()
    verdict = tool(path)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**10, path.stat().st_size / 1e6 / seconds, verdict


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
        print(
            f"{'tool':<11} {'detected':>12} {'benign passed':>14} {'crashed':>8} {'MB/s':>8} "
            f"{'MB/s finished':>12}"
        )
        results = {}
        for name, tool in TOOLS.items():
            try:
                results[name] = _counts(tool, samples)
            except ImportError as exc:
                print(f"{name:<11} not installed ({exc}); pip install 'mlwarden[bench]'")
        speeds = _throughput({n: TOOLS[n] for n in results}, samples)
        # The same, on the files picklescan reads to the end without an error: it stops at the
        # first raw array of a joblib file, which makes it fast on exactly the files it skips.
        common = [s for s in samples if s.path not in results.get("picklescan", {}).get(
            "crashed", set())]  # fmt: skip
        speeds_common = _throughput({n: TOOLS[n] for n in results}, common)
        for name, r in results.items():
            r["mb_s"], r["mb_s_common"] = speeds[name], speeds_common[name]
            print(
                f"{name:<11} {r['detected']:>5}/{bad:<6} {r['passed']:>7}/{good:<6} "
                f"{len(r['crashed']):>8} {r['mb_s']:>8.1f} {r['mb_s_common']:>12.1f}"
            )
        print(f"(MB/s: all {size:.1f} MB; 'finished': the {len(common)} files picklescan reads "
              "to the end)")  # fmt: skip
        for big in _big_files(root):
            print(f"\n{big.stat().st_size / 1e6:.0f} MB checkpoint-like file ({big.name}):")
            for name in ("mlwarden", "picklescan"):
                try:
                    _verdict(TOOLS[name], big)  # warm-up, as above
                    peak, mb_s, verdict = _peak(TOOLS[name], big)
                except ImportError:
                    continue
                flagged = {True: "flagged", False: "passed", None: "crashed"}[verdict]
                print(
                    f"  {name:<11} peak traced memory {peak:9.1f} KiB, {mb_s:9.1f} MB/s, {flagged}"
                )
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
