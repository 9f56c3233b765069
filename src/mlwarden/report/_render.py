"""Write a run report as JSON and as one self-contained HTML page."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape

from mlwarden.report._model import RunReport
from mlwarden.report._plots import checks_png, confusion_matrix_png, roc_png

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>mlwarden report: {{ r.pipeline }} ({{ r.status }})</title>
<style>
 body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
 h1 { margin-bottom: 0.1em; } .sub { color: #666; margin-top: 0; }
 .badge { padding: 0.2em 0.6em; border-radius: 4px; color: white; font-weight: bold; }
 .ok { background: #2e7d32; } .bad { background: #c62828; } .warn { background: #ef6c00; }
 table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
 th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
 th { background: #f4f4f4; } code { font-size: 0.85em; }
 .figs { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
</style></head><body>
<h1>{{ r.pipeline }}
 {% if r.status == "completed" %}<span class="badge ok">completed</span>
 {% elif r.status == "rejected" %}<span class="badge bad">rejected by the gate</span>
 {% else %}<span class="badge bad">{{ r.status }}</span>{% endif %}</h1>
<p class="sub">{{ r.description }}<br>run <code>{{ r.run_id }}</code>, {{ r.created_at }},
 {{ "%.1f"|format(r.seconds) }} s; spec <code>{{ r.spec_sha256[:12] }}</code></p>
{% if r.error %}<p><span class="badge bad">error</span> {{ r.error }}</p>{% endif %}
{% if r.model_version %}<p>Registered model: <b>{{ r.model_version }}</b>
 (signed manifest; lineage head <code>{{ (r.lineage_head or "")[:12] }}</code>)</p>{% endif %}
{% if r.gate %}<h2>Gate ({{ r.gate.mode }})</h2>
<p>{% if r.gate.passed %}<span class="badge ok">passed</span> all checks passed
{% elif r.gate.allow_registration %}<span class="badge warn">flagged</span> registered despite:
{% else %}<span class="badge bad">failed</span> not registered:{% endif %}</p>
{% if r.gate.failures %}<ul>{% for f in r.gate.failures %}<li>{{ f }}</li>{% endfor %}</ul>{% endif %}
{% endif %}
{% if r.checks %}<h2>Checks</h2>
<table><tr><th>check</th><th>metric</th><th>measured</th><th>threshold</th><th>result</th>
<th>queries</th><th>time</th></tr>
{% for c in r.checks %}<tr><td>{{ c.check }}</td><td>{{ c.metric }}</td>
<td>{{ "%.4f"|format(c.value) if c.value is not none else "n/a" }}</td>
<td>{{ c.comparison }} {{ c.threshold }}</td>
<td>{% if c.passed %}<span class="badge ok">pass</span>{% else %}<span class="badge bad">fail</span>{% endif %}</td>
<td>{{ c.queries }}</td><td>{{ "%.2f"|format(c.wall_time_s) }} s</td></tr>{% endfor %}</table>
<img alt="checks against thresholds" src="data:image/png;base64,{{ figs.checks }}">{% endif %}
{% if r.metrics %}<h2>Held-out evaluation ({{ r.metrics.n }} rows)</h2>
<table><tr>{% for k in ["accuracy", "precision", "recall", "f1", "roc_auc"] %}<th>{{ k }}</th>{% endfor %}</tr>
<tr>{% for k in ["accuracy", "precision", "recall", "f1", "roc_auc"] %}
<td>{{ "%.4f"|format(r.metrics[k]) if r.metrics[k] is not none else "n/a" }}</td>{% endfor %}</tr></table>
<p>Positive class: <b>{{ r.metrics.positive }}</b></p>
<div class="figs">
<img alt="confusion matrix" src="data:image/png;base64,{{ figs.confusion }}">
{% if figs.roc %}<img alt="ROC curve" src="data:image/png;base64,{{ figs.roc }}">{% endif %}
</div>{% endif %}
{% if r.search %}<h2>Hyper-parameter search ({{ r.search.estimator }}, {{ r.search.scoring }})</h2>
<table><tr><th>rank</th><th>parameters</th><th>mean CV score</th><th>std</th></tr>
{% for c in r.search.candidates|sort(attribute="rank") %}<tr><td>{{ c.rank }}</td>
<td><code>{{ c.params|tojson }}</code></td><td>{{ "%.4f"|format(c.mean_score) }}</td>
<td>{{ "%.4f"|format(c.std_score) }}</td></tr>{% endfor %}</table>{% endif %}
{% if r.validation %}<h2>Data validation</h2>
<p>{{ r.validation.rows_in }} rows in = {{ r.validation.rows_accepted }} accepted +
 {{ r.validation.rows_rejected }} rejected.</p>
{% if r.validation.issues %}<table><tr><th>column</th><th>rule</th><th>rows</th><th>examples</th></tr>
{% for i in r.validation.issues %}<tr><td>{{ i.column }}</td><td>{{ i.rule }}</td><td>{{ i.count }}</td>
<td><code>{{ i.examples|join(", ") }}</code></td></tr>{% endfor %}</table>{% endif %}{% endif %}
<h2>Lineage of this run</h2>
<table><tr><th>step</th><th>status</th><th>time</th><th>execution</th><th>code</th>
<th>parameters</th><th>inputs</th><th>outputs</th></tr>
{% for s in r.steps %}<tr><td>{{ s.step }}</td><td>{{ s.status }}</td>
<td>{{ "%.2f"|format(s.seconds) }} s</td><td><code>{{ (s.execution_id or "")[:12] }}</code></td>
<td><code>{{ (s.code_version or "")[:12] }}</code></td><td><code>{{ s.params|tojson }}</code></td>
<td>{% for role, sha in s.inputs.items() %}{{ role }} <code>{{ sha[:12] }}</code><br>{% endfor %}</td>
<td>{% for role, sha in s.outputs.items() %}{{ role }} <code>{{ sha[:12] }}</code><br>{% endfor %}
{% if s.error %}<b>{{ s.error }}</b>{% endif %}</td></tr>{% endfor %}</table>
<p class="sub">mlwarden report format {{ r.format }}. Verify the record with
 <code>mlwarden lineage verify</code>; trace the model with
 <code>mlwarden lineage trace {{ r.model_version or "NAME@VERSION" }}</code>.</p>
</body></html>
"""

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))


def _figure(
    cache: Path | None, kind: str, data: Any, draw: Callable[[], str]
) -> str:
    """A figure, drawn once per distinct data when a cache folder is given."""
    if cache is None:
        return draw()
    key = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    path = cache / f"{kind}-{key}.png.b64"
    if path.exists():
        return path.read_text()
    png = draw()
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(png)
    return png


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
            figure_cache, "confusion", [m["confusion_matrix"], m["classes"]],
            lambda: confusion_matrix_png(m["confusion_matrix"], m["classes"]),
        )
        if m.get("roc_curve"):
            curve = m["roc_curve"]
            figs["roc"] = _figure(
                figure_cache, "roc", [curve, m.get("roc_auc")],
                lambda: roc_png(curve["fpr"], curve["tpr"], m.get("roc_auc")),
            )
    return _env.from_string(_TEMPLATE).render(r=report, figs=figs)


def write_report(
    report: RunReport, folder: Path, figure_cache: Path | None = None
) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``folder``; return both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / "report.json", folder / "report.html"
    json_path.write_text(json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
    html_path.write_text(render_html(report, figure_cache))
    return json_path, html_path
