"""Write a run report as JSON and as one self-contained HTML page."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape

from mlwarden.report import _plots
from mlwarden.report._ci import to_junit, to_sarif
from mlwarden.report._model import RunReport
from mlwarden.report._plots import (
    bars_png,
    checks_png,
    confusion_matrix_png,
    curve_png,
    roc_png,
)

# A figure is cached under its data and the code that draws it, so a change to either redraws.
_PLOTS_CODE = Path(_plots.__file__).read_bytes()

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_TEMPLATE = resources.files("mlwarden.report").joinpath("_template.html.j2").read_text("utf-8")


def _figure(cache: Path | None, kind: str, data: Any, draw: Callable[[], str]) -> str:
    """A figure, drawn once per distinct data when a cache folder is given."""
    if cache is None:
        return draw()
    key = hashlib.sha256(_PLOTS_CODE + json.dumps(data, sort_keys=True).encode()).hexdigest()
    path = cache / f"{kind}-{key}.png.b64"
    if path.exists():
        return path.read_text()
    png = draw()
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(png)
    return png


def _draw_curve(name: str, curve: dict[str, Any]) -> str:
    return curve_png(curve, name)


def _draw_bars(name: str, bars: dict[str, Any]) -> str:
    return bars_png(bars["labels"], bars["values"], bars.get("xlabel", ""), name)


def render_html(report: RunReport, figure_cache: Path | None = None) -> str:
    """The report as one HTML page with its figures embedded.

    Figures depend only on their data, so with ``figure_cache`` a rerun whose results did not
    change reuses them instead of drawing again.
    """
    figs: dict[str, str | None] = {"checks": None, "confusion": None, "roc": None}
    if report.checks:
        data = [c.model_dump(exclude={"wall_time_s"}) for c in report.checks]
        figs["checks"] = _figure(figure_cache, "checks", data, lambda: checks_png(report.checks))
    if report.metrics:
        m = report.metrics
        figs["confusion"] = _figure(
            figure_cache,
            "confusion",
            [m["confusion_matrix"], m["classes"]],
            lambda: confusion_matrix_png(m["confusion_matrix"], m["classes"]),
        )
        if m.get("roc_curve"):
            curve = m["roc_curve"]
            figs["roc"] = _figure(
                figure_cache,
                "roc",
                [curve, m.get("roc_auc")],
                lambda: roc_png(curve["fpr"], curve["tpr"], m.get("roc_auc")),
            )
    curves = [
        _figure(
            figure_cache, "curve", [check.check, curve], partial(_draw_curve, check.check, curve)
        )
        for check in report.checks
        if (curve := check.details.get("curve")) and (curve.get("x") or curve.get("series"))
    ]
    curves += [
        _figure(figure_cache, "bars", [check.check, bars], partial(_draw_bars, check.check, bars))
        for check in report.checks
        if (bars := check.details.get("bars")) and bars.get("labels")
    ]
    return _env.from_string(_TEMPLATE).render(r=report, figs=figs, curves=curves)


def write_report(
    report: RunReport, folder: Path, figure_cache: Path | None = None, tool_version: str = ""
) -> tuple[Path, Path]:
    """Write ``report.json``, ``report.html``, ``report.sarif`` and ``report.junit.xml``.

    Returns the JSON and HTML paths; the SARIF and JUnit files sit beside them.
    """
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / "report.json", folder / "report.html"
    json_path.write_text(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
    html_path.write_text(render_html(report, figure_cache))
    sarif = to_sarif(report, tool_version)
    (folder / "report.sarif").write_text(json.dumps(sarif, indent=2) + "\n")
    (folder / "report.junit.xml").write_text(to_junit(report) + "\n")
    return json_path, html_path
