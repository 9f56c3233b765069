"""Write a run report as JSON and as one self-contained HTML page."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
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
    figs: dict[str, str | None] = {"checks": None, "confusion": None, "roc": None, "shap": None}
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
    explained = report.explanations or {}
    shap = explained.get("mean_abs") or []
    if shap:
        bars = {
            "labels": [f["feature"] for f in shap[:15]],
            "values": [f["value"] for f in shap[:15]],
            "xlabel": f"mean |SHAP| ({explained.get('output')}, held-out sample)",
        }
        figs["shap"] = _figure(
            figure_cache, "bars", ["shap", bars], partial(_draw_bars, "SHAP", bars)
        )
    permutation = {
        i["feature"]: i["importance"]
        for c in report.checks
        if c.check == "attribution_share"
        for i in c.details.get("importances", [])
    }
    return _env.from_string(_TEMPLATE).render(
        r=report, figs=figs, curves=curves, permutation=permutation
    )


_PARTIAL = ".partial-"


def _stale_partials(parent: Path) -> list[Path]:
    """Temporary report folders left by writers that were killed (their process is gone)."""
    stale = []
    for path in parent.glob(f".*{_PARTIAL}*"):
        pid = path.name.rsplit(_PARTIAL, 1)[1].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            stale.append(path)
    return stale


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_report(
    report: RunReport, folder: Path, figure_cache: Path | None = None, tool_version: str = ""
) -> tuple[Path, Path]:
    """Write ``report.json``, ``report.html``, ``report.sarif`` and ``report.junit.xml``.

    The files are written to a temporary folder beside ``folder`` and renamed into place, so a
    process killed while writing leaves no half-written report: a new ``folder`` appears whole
    in one rename; an existing one (a reused output folder, which may hold other files) gets
    each file replaced whole. Temporary folders of killed writers are removed on the next write.
    Returns the JSON and HTML paths; the SARIF and JUnit files sit beside them.
    """
    target = folder.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in _stale_partials(target.parent):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{target.name}{_PARTIAL}{os.getpid()}-", dir=target.parent)
    )
    try:
        files = {
            "report.html": render_html(report, figure_cache),
            "report.sarif": json.dumps(to_sarif(report, tool_version), indent=2) + "\n",
            "report.junit.xml": to_junit(report) + "\n",
            # Last, so that a report.json always has its companions beside it.
            "report.json": json.dumps(report.model_dump(mode="json"), indent=2) + "\n",
        }
        for name, text in files.items():
            (tmp / name).write_text(text)
        tmp.chmod(target.parent.stat().st_mode & 0o777)  # mkdtemp's is private
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():
                raise
            for name in files:
                os.replace(tmp / name, target / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / "report.json", folder / "report.html"
