"""Evasion attacks side by side with the Adversarial Robustness Toolbox, in one run.

Run by hand: ``.venv/bin/python bench/evasion.py`` (needs the torch extra and
``pip install adversarial-robustness-toolbox``). Runs ``bench/evasion_pgd.py`` (PGD on the
Digits torch models: success rate and wall time) and ``bench/evasion_hsj.py`` (HopSkipJump on a
gradient-boosting phishing model: median perturbation at 1,000 and 5,000 queries per point, and
wall time), each with its own defaults. Targets: success and perturbation at least as good as
ART's, at half its wall time or less.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def main() -> None:
    for name in ("evasion_pgd.py", "evasion_hsj.py"):
        script = str(Path(__file__).with_name(name))
        print(f"== {name}", flush=True)
        sys.argv = [script]
        runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
