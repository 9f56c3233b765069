"""The checks ``mlwarden audit --checks GROUP`` runs, with their default thresholds.

Each default was set from measurements on the bundled datasets against healthy baselines and
planted weaknesses (``bench/calibration.py`` prints the table, ``tests/audit/test_calibration.py``
pins its rows): a healthy model must not fail for a reason that is not a weakness, and each
planted weakness must fail the check made for it.
"""

from __future__ import annotations

from typing import Any

CHECK_GROUPS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "performance": [("performance_floor", {"metric": "roc_auc", "min": 0.8})],
    "generalization": [("generalization_gap", {"metric": "accuracy", "max_gap": 0.05})],
    "evasion": [("evasion", {"threat_model": "phishing", "cost_budget": 3, "max_success": 0.05})],
    "shortcuts": [("attribution_share", {"max_share": 0.7})],
    "ood": [("ood_confidence", {"min_auroc": 0.55})],
    "membership": [("membership", {"max_tpr_at_fpr": {"fpr": 0.01, "tpr": 0.05}})],
    "extraction": [("extraction", {"max_gain": 0.1, "queries": 2000, "compare_outputs": True})],
}

#: What ``mlwarden audit`` runs without ``--checks``: the groups that need nothing but a model
#: and its data, and finish in seconds.
DEFAULT_GROUPS = ("performance", "generalization", "shortcuts", "ood")
