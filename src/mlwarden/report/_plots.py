"""Report figures as base64 PNGs, so the HTML report is one self-contained file."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlwarden.report._model import CheckLine

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _pyplot() -> Any:
    """pyplot on the Agg backend, imported on first use (it costs about a second)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def confusion_matrix_png(matrix: Sequence[Sequence[int]], classes: Sequence[Any]) -> str:
    """Counts of true (rows) against predicted (columns) classes."""
    n = len(classes)
    fig, ax = _pyplot().subplots(figsize=(1.2 + 0.6 * n, 1.0 + 0.6 * n))
    image = ax.imshow(matrix, cmap="Blues")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            colour = "white" if count > peak / 2 else "black"
            ax.text(j, i, str(count), ha="center", va="center", color=colour, fontsize=9)
    labels = [str(c) for c in classes]
    ax.set_xticks(range(n), labels, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _png(fig)


def roc_png(fpr: Sequence[float], tpr: Sequence[float], auc: float | None) -> str:
    """The held-out ROC curve against the chance diagonal."""
    fig, ax = _pyplot().subplots(figsize=(4, 4))
    ax.plot(fpr, tpr, lw=2, label=f"model (AUC {auc:.4f})" if auc is not None else "model")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right")
    return _png(fig)


def checks_png(checks: Sequence[CheckLine]) -> str:
    """Each check's measured value as a bar, its threshold as a black tick."""
    fig, ax = _pyplot().subplots(figsize=(6, 0.5 + 0.5 * len(checks)))
    names = [f"{c.check}\n{c.metric}" for c in checks]
    values = [c.value if c.value is not None else 0.0 for c in checks]
    palette = {"pass": "#2e7d32", "inconclusive": "#ef6c00"}
    colours = [palette.get(c.verdict, "#c62828") for c in checks]
    ax.barh(range(len(checks)), values, color=colours, height=0.5)
    for i, c in enumerate(checks):
        ax.plot([c.threshold, c.threshold], [i - 0.35, i + 0.35], color="black", lw=2)
        ax.text(
            max(values[i], c.threshold),
            i,
            f" {values[i]:.4f} ({c.comparison} {c.threshold:g})",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(range(len(checks)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max([1.0, *values]) * 1.3)
    ax.set_xlabel("measured value (bar) and threshold (tick)")
    return _png(fig)


def curve_png(curve: dict[str, Any], title: str) -> str:
    """One check's curve: evasion success against cost, accuracy against epsilon, and so on.

    ``curve`` holds ``x`` and ``y`` for one line, or ``series`` (each with ``label``, ``x``
    and ``y``) for several; ``xscale``/``yscale`` ``"log"`` and ``diagonal`` (the ``y = x``
    chance line, as on a membership ROC) are optional.
    """
    fig, ax = _pyplot().subplots(figsize=(4.5, 3.2))
    series = curve.get("series") or [{"label": None, "x": curve["x"], "y": curve["y"]}]
    log_x, log_y = curve.get("xscale") == "log", curve.get("yscale") == "log"
    for line in series:
        points = [
            (x, y)
            for x, y in zip(line["x"], line["y"], strict=True)
            if (x > 0 or not log_x) and (y > 0 or not log_y)
        ]
        ax.plot([x for x, _ in points], [y for _, y in points], marker="o", ms=3, lw=2,
                label=line.get("label"))  # fmt: skip
    if curve.get("diagonal"):
        low = min((x for line in series for x in line["x"] if x > 0), default=1e-4)
        ax.plot([low, 1.0], [low, 1.0], ls="--", color="grey", label="chance")
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(curve.get("xlabel", ""))
    ax.set_ylabel(curve.get("ylabel", ""))
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if any(line.get("label") for line in series) or curve.get("diagonal"):
        ax.legend(fontsize=7)
    return _png(fig)


def bars_png(labels: Sequence[str], values: Sequence[float], xlabel: str, title: str) -> str:
    """A check's ranked quantities, such as each feature's share of the attribution."""
    fig, ax = _pyplot().subplots(figsize=(5, 0.6 + 0.28 * len(labels)))
    ax.barh(range(len(labels)), values, color="#1565c0", height=0.6)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    return _png(fig)
