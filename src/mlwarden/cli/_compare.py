"""``mlwarden models compare A B``: which of two served versions is better, from the feedback
analysts sent back to the server's decision log."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from mlwarden.cli._common import DEFAULT_STORE, StoreOpt, out
from mlwarden.errors import ParameterError, RecordNotFoundError


def _ref(value: str) -> str:
    name, at, version = value.partition("@")
    if not (name and at and version) or "@" in version:
        raise ParameterError(
            f"expected a model version as NAME@VERSION (e.g. phish@2), got {value!r}"
        )
    return value


def _fmt(value: float | None, low: float | None = None, high: float | None = None) -> str:
    if value is None:
        return "n/a"
    if low is None or high is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def models_compare(
    a: Annotated[str, typer.Argument(help="NAME@VERSION of the first (baseline) version")],
    b: Annotated[str, typer.Argument(help="NAME@VERSION of the version compared with it")],
    store: StoreOpt = DEFAULT_STORE,
    positive: Annotated[
        str | None,
        typer.Option(help="The class measured (default: the last class in sorted order)."),
    ] = None,
    window: Annotated[
        int, typer.Option(min=1, help="Use each version's last N labelled rows.")
    ] = 500,
    min_labelled: Annotated[
        int, typer.Option(min=1, help="Fewer labelled rows than this is inconclusive.")
    ] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """Compare two versions' precision, recall and F1 on the feedback in the decision log
    (served and shadow answers), with 95% intervals and whether the difference is significant."""
    from mlwarden.serve import (
        compare,
        default_positive,
        labelled_outcomes,
        open_decision_log,
        record_labels,
    )

    refs = [_ref(a), _ref(b)]
    if refs[0] == refs[1]:
        raise ParameterError(f"compare needs two different versions, got {a} twice")
    log = open_decision_log(store)
    try:
        records = log.labelled()
    finally:
        log.close()
    classes: set[str] = set()
    for record in records:
        classes |= record_labels(record)
    if not classes:
        raise RecordNotFoundError(
            f"the decision log under {store} holds no feedback yet: POST /v1/feedback first"
        )
    pos = positive if positive is not None else default_positive(classes)
    by_ref = labelled_outcomes(records, pos)
    for ref in refs:
        if not by_ref.get(ref):
            known = ", ".join(sorted(by_ref)) or "none"
            raise RecordNotFoundError(
                f"{ref} has no labelled decisions in the log under {store} "
                f"(versions with feedback: {known})"
            )
    result = compare(a, by_ref[a][-window:], b, by_ref[b][-window:], min_labelled=min_labelled)
    if as_json:
        out.print_json(json.dumps({"positive": pos, **result.model_dump(mode="json")}))
        return
    table = Table(title=f"{a} vs {b} (positive class {pos!r})")
    for column in ("metric", a, b, f"{b} - {a} [95%]", "p", "significant"):
        table.add_column(column, overflow="fold")  # narrow terminals wrap, never cut numbers
    for d in result.differences:
        ea, eb = result.efficacy_a, result.efficacy_b
        ia, ib = getattr(ea, d.metric), getattr(eb, d.metric)
        table.add_row(
            d.metric,
            _fmt(ia.value, ia.low, ia.high),
            _fmt(ib.value, ib.low, ib.high),
            _fmt(d.difference, d.low, d.high),
            "n/a" if d.p_value is None else f"{d.p_value:.3f}" if d.p_value >= 1e-3 else "<0.001",
            "yes" if d.significant else "no",
        )
    ea, eb = result.efficacy_a, result.efficacy_b
    table.add_row("labelled rows", str(ea.labelled), str(eb.labelled), "", "", "")
    table.add_row(
        "calibration error", _fmt(ea.calibration_error), _fmt(eb.calibration_error), "", "", ""
    )
    out.print(table)
    better = {"a": a, "b": b}.get(result.verdict)
    out.print(f"[bold]{better or 'inconclusive'}[/]: {result.reason}")
