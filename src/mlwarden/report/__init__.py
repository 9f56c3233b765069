"""Reports: the run report model and its JSON and self-contained HTML forms."""

from mlwarden.report._ci import SARIF_SCHEMA, to_junit, to_sarif
from mlwarden.report._model import CheckLine, RunReport, StepLine
from mlwarden.report._render import render_html, write_report

__all__ = [
    "CheckLine",
    "RunReport",
    "StepLine",
    "render_html",
    "to_junit",
    "to_sarif",
    "write_report",
]

__all__ += ["SARIF_SCHEMA"]
