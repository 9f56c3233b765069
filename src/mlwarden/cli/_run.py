"""``mlwarden run``, ``retrain`` and ``demo``: run a pipeline spec and print what it did."""

from __future__ import annotations

from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from mlwarden._tasks import JoblibRunner
from mlwarden._version import __version__
from mlwarden.cli._common import DEFAULT_STORE, DbOpt, StoreOpt, err, open_store, out, score
from mlwarden.cli._progress import RichProgress
from mlwarden.errors import ParameterError, SpecError

if TYPE_CHECKING:
    from mlwarden.lineage import LineageStore
    from mlwarden.pipeline import LocalExecutor


class Executor(StrEnum):
    """Where a run's steps execute."""

    local = "local"
    ray = "ray"


def _executor(
    lineage: LineageStore, executor: str, workers: int, ray_address: str | None
) -> LocalExecutor:
    """The executor the options name (``local``: this process, ``workers`` processes inside
    steps; ``ray``: steps as tasks on the cluster at ``ray_address``)."""
    from mlwarden.pipeline import LocalExecutor, RayExecutor

    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            raise ParameterError("--executor ray needs Ray: pip install 'mlwarden[ray]'") from exc
        return RayExecutor(lineage, RichProgress(out), address=ray_address)
    if ray_address is not None:
        raise ParameterError("--ray-address is for --executor ray")
    return LocalExecutor(lineage, RichProgress(out), JoblibRunner(workers))


def _run_spec(
    spec_path: Path,
    store: Path,
    db_url: str | None,
    from_feedback: bool = False,
    *,
    executor: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
) -> int:
    from mlwarden.pipeline import PipelineSpec, load_spec, write_run_report

    lineage = open_store(store, db_url)
    spec = load_spec(spec_path, memo=lineage.root / "cache" / "specs")
    if from_feedback:
        if not isinstance(spec, PipelineSpec):
            raise SpecError("--from-feedback retrains a tabular pipeline, not a language model")
        from mlwarden.serve import feedback_table

        label = spec.data.label
        if label is None and spec.data.dataset is not None:
            from mlwarden import data as datasets

            label = datasets.load(spec.data.dataset).label
        labelled = feedback_table(lineage.root, label or "")
        out.print(
            f"{labelled.rows} feedback row(s) from the decision log: {labelled.path}",
            soft_wrap=True,
        )
        spec = spec.model_copy(
            update={"data": spec.data.model_copy(update={"feedback": labelled.path})}
        )
    # Paths are printed with soft_wrap: a line wrapped mid-path cannot be copied back.
    out.print(
        f"[bold]mlwarden {__version__}[/]: pipeline [bold]{spec.name}[/] "
        f"from {spec_path}, store {lineage.root}",
        soft_wrap=True,
    )
    result = _executor(lineage, executor, workers, ray_address).run(spec)
    report, json_path, html_path = write_run_report(lineage, spec, result, str(spec_path))
    if report.checks:
        from mlwarden.cli._audit import _MARKS

        table = Table(title="checks", title_justify="left")
        for column in ("check", "metric", "measured [95% interval]", "threshold", "result"):
            table.add_column(column)
        for c in report.checks:
            value = f"{c.value:.4f}" if c.value is not None else "n/a"
            if c.value is not None and c.interval is not None:
                value += f" [{c.interval[0]:.4f}, {c.interval[1]:.4f}]"
            verdict = _MARKS.get(c.verdict, c.verdict)
            table.add_row(c.check, c.metric, value, f"{c.comparison} {c.threshold:g}", verdict)
        out.print(table)
    if report.metrics:
        m = report.metrics
        out.print(
            f"held-out: accuracy {score(m['accuracy'])}  precision {score(m['precision'])}  "
            f"recall {score(m['recall'])}  F1 {score(m['f1'])}  ROC AUC {score(m['roc_auc'])}"
        )
        overlap, unseen = m.get("overlap") or {}, m.get("deduplicated")
        if overlap.get("seen_in_training") and unseen:
            out.print(
                f"held-out, the {unseen['n']:,} test rows not seen in training "
                f"({overlap['seen_in_training']:,} of {overlap['test_rows']:,} copy a training "
                f"row): accuracy {score(unseen['accuracy'])}  F1 {score(unseen['f1'])}  "
                f"ROC AUC {score(unseen['roc_auc'])}"
            )
    hardening = (report.search or {}).get("hardening") or {}
    if hardening.get("held_out"):
        _print_hardening(hardening)
    executed, cached = len(result.executed), len(result.cached)
    out.print(f"{executed} step(s) executed, {cached} cache hit(s) in {result.seconds:.1f} s")
    out.print(f"report: {html_path}", soft_wrap=True)
    out.print(f"        {json_path}", soft_wrap=True)
    out.print(
        f"for CI: {html_path.with_name('report.sarif')}, report.junit.xml beside it",
        soft_wrap=True,
    )
    if result.status == "completed":
        from mlwarden.audit import GateResult

        reason = GateResult.model_validate(report.gate).flagged_because if report.gate else None
        flag = f" [yellow](flagged: {reason})[/]" if reason else ""
        out.print(f"[green]registered[/] [bold]{result.model_version}[/]{flag}")
        return 0
    err.print(f"[red]error:[/] {result.error}")
    return result.exit_code or 1


def _print_hardening(hardening: dict[str, object]) -> None:
    """Evasion and clean metrics before and after hardening, side by side, and what it cost."""
    from mlwarden.pipeline import CLEAN_METRICS, COST_TOLERANCE, HeldOutComparison

    o = HeldOutComparison.model_validate(hardening["held_out"])
    table = Table(
        title=f"hardening: the same {o.rows:,} held-out rows before and after", title_justify="left"
    )
    for column in ("measure", "before", "after", "change"):
        table.add_column(column)
    shown = []
    for e in (o.evasion_before, o.evasion_after):
        shown.append("n/a" if e.success is None else f"{e.success:.1%} ({e.flipped}/{e.attacked})")
    b, a = o.evasion_before.success, o.evasion_after.success
    delta = "" if a is None or b is None else f"{100 * (a - b):+.1f} points"
    table.add_row(f"evasion at cost <= {hardening['cost_budget']:g}", *shown, delta)
    costs = o.costs(COST_TOLERANCE)
    for name in CLEAN_METRICS:
        before, after = o.metrics_before.get(name), o.metrics_after.get(name)
        if before is None or after is None:
            table.add_row(name, str(before), str(after), "")
            continue
        change = f"{after - before:+.4f}"
        table.add_row(
            name, f"{before:.4f}", f"{after:.4f}", f"[red]{change}[/]" if name in costs else change
        )
    out.print(table)
    if costs:
        lost = ", ".join(f"{k} {b:.4f} -> {a:.4f}" for k, (b, a) in costs.items())
        out.print(
            f"[yellow]what hardening cost on the clean held-out rows: {lost}[/]", soft_wrap=True
        )
    else:
        out.print(f"hardening lowered no clean held-out metric by more than {COST_TOLERANCE:g}")


def run_command(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (YAML).")],
    store: StoreOpt = DEFAULT_STORE,
    db_url: DbOpt = None,
    executor: Annotated[
        Executor, typer.Option("--executor", help="Where steps run: here, or as Ray tasks.")
    ] = Executor.local,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, help="Local worker processes for the parallel work in steps."
        ),
    ] = 1,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Ray cluster to join (default: RAY_ADDRESS, a cluster started here with "
            "ray start, else a new local one; local: always a new one).",
        ),
    ] = None,
) -> int:
    """Run a pipeline spec: ingest, validate, split, train, evaluate, audit, gate, register."""
    return _run_spec(
        spec, store, db_url, executor=executor.value, workers=workers, ray_address=ray_address
    )


def retrain_command(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (YAML) that made the served model.")],
    from_feedback: Annotated[
        bool,
        typer.Option("--from-feedback", help="Add the rows analysts labelled through the server."),
    ] = False,
    store: StoreOpt = DEFAULT_STORE,
    db_url: DbOpt = None,
) -> int:
    """Run a pipeline again as a new lineage-tracked run, with production feedback rows added."""
    if not from_feedback:
        raise typer.BadParameter("say where the new rows come from: --from-feedback")
    return _run_spec(spec, store, db_url, from_feedback=True)


def demo_command(store: StoreOpt = DEFAULT_STORE, db_url: DbOpt = None) -> int:
    """Run the bundled demo: a gradient-boosting phishing detector on UCI Phishing Websites."""
    spec = resources.files("mlwarden").joinpath("_specs", "phishing.yaml")
    with resources.as_file(spec) as path:
        return _run_spec(Path(path), store, db_url)
