"""Tramèr et al. (USENIX Security 2016) Table 1 reproduced locally, then extraction by distillation.

Run by hand: ``.venv/bin/python bench/extraction.py``. Runs, each with its own defaults:

* ``bench/extraction_equations.py``: equation solving against logistic regression on Digits
  (multinomial) and Adult (one-hot categoricals), queries and seconds to 100% fidelity beside
  the paper's 650 and 1,485 queries;
* ``bench/extraction_tree.py``: path-finding extraction of a German Credit decision tree,
  beside the paper's 1,150 queries;
* ``bench/extraction_hardening.py``: Knockoff-style distillation's fidelity over budgets of
  100 to 20,000 queries (uniform and public query sources), and the queries each serving
  option (probabilities, rounded, top-1, label only) costs the thief.

Target: 100% fidelity with no more queries than the paper.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def main() -> None:
    for name in ("extraction_equations.py", "extraction_tree.py", "extraction_hardening.py"):
        script = str(Path(__file__).with_name(name))
        print(f"== {name}", flush=True)
        sys.argv = [script]
        runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
