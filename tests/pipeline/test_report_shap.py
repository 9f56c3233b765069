"""The run report's global explanation: mean |SHAP| per input column on held-out rows, beside
the attribution check's permutation importance."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlwarden.lineage import LineageStore
from mlwarden.pipeline import LocalExecutor, build_report, parse_spec
from mlwarden.pipeline._report import EXPLAIN_ROWS
from mlwarden.report import render_html
from tests.serve.test_app import SPEC

# the server tests' phishing spec, with the estimator swapped and the attribution check added
CHECK = "  - {check: attribution_share, max_share: 0.95, rows: 300, n_repeats: 1}\n"


def _spec(estimator: str, params: str) -> str:
    return (
        SPEC.replace("estimator: logistic_regression", f"estimator: {estimator}")
        .replace("params: {max_iter: 1000, C: REPLACE_C}", f"params: {params}")
        .replace("checks:\n", "checks:\n" + CHECK)
    )


def _run(root: Path, estimator: str, params: str) -> tuple[LineageStore, object, object]:
    store = LineageStore(root)
    spec = parse_spec(_spec(estimator, params))
    result = LocalExecutor(store).run(spec)
    assert result.status == "completed", result.error
    return store, spec, result


def test_a_linear_model_report_ranks_columns_by_mean_abs_shap(tmp_path: Path) -> None:
    store, spec, result = _run(tmp_path / "store", "logistic_regression", "{max_iter: 500}")
    try:
        report = build_report(store, spec, result)  # type: ignore[arg-type]
    finally:
        store.close()
    e = report.explanations
    assert e is not None and "error" not in e
    assert (e["method"], e["output"], e["explained_class"]) == ("linear", "log-odds", "phishing")
    assert e["rows"] == EXPLAIN_ROWS  # bounded: the held-out split has thousands of rows
    values = [f["value"] for f in e["mean_abs"]]
    assert len(values) == 23 and values == sorted(values, reverse=True) and values[0] > 0
    # SHAP and permutation importance agree on what matters most (phishing's SSL feature)
    shortcut = next(c for c in report.checks if c.check == "attribution_share")
    top_permutation = shortcut.details["importances"][0]["feature"]
    assert top_permutation in [f["feature"] for f in e["mean_abs"][:3]]
    html = render_html(report)
    assert "What the model looks at (SHAP)" in html and "permutation importance</th>" in html
    assert 'alt="mean absolute SHAP values"' in html


def test_a_tree_model_report_uses_the_tree_explainer(tmp_path: Path) -> None:
    pytest.importorskip("shap")
    store, spec, result = _run(
        tmp_path / "store", "random_forest", "{n_estimators: 10, max_depth: 4}"
    )
    try:
        report = build_report(store, spec, result)  # type: ignore[arg-type]
    finally:
        store.close()
    e = report.explanations
    assert e is not None and (e["method"], e["output"]) == ("tree", "probability")
    assert sum(f["value"] for f in e["mean_abs"]) > 0
