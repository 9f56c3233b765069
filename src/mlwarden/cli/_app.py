"""The ``mlwarden`` command line: run pipelines, inspect lineage and registered models."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree
from typer.exceptions import TyperException

from mlwarden._version import __version__
from mlwarden.cli._audit import audit_command
from mlwarden.cli._common import (
    DEFAULT_STORE,
    OPENED,
    DbOpt,
    StoreOpt,
    err,
    open_store,
    out,
    score,
)
from mlwarden.cli._compare import models_compare
from mlwarden.cli._data import schema_app, validate_command
from mlwarden.cli._import import import_command
from mlwarden.cli._orchestrate import compile_command, step_app
from mlwarden.cli._provenance import add_provenance_commands
from mlwarden.cli._run import demo_command, retrain_command, run_command
from mlwarden.cli._scan import scan_command
from mlwarden.cli._serve import decisions_app, keys_app, serve_command
from mlwarden.cli._signing import TrustOpt, print_warnings, signing_app
from mlwarden.cli._threat import threat_app
from mlwarden.cli._witness import (
    ExportOpt,
    WitnessOpt,
    exit_code,
    store_trust,
)
from mlwarden.errors import MlwardenError, RecordNotFoundError, SignatureError
from mlwarden.lineage import (
    TraceNode,
    UseEdge,
    artifact_info,
    downstream,
    key_id,
    local_witness_path,
    upstream,
    verify_store,
    write_checkpoint_file,
)
from mlwarden.models import ModelRegistry, model_history_problems
from mlwarden.pipeline import rows_kept_out

app = typer.Typer(
    name="mlwarden",
    help="Red-team, gate and guard machine-learning models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
lineage_app = typer.Typer(help="Inspect and verify the lineage store.", no_args_is_help=True)
models_app = typer.Typer(help="List and inspect registered model versions.", no_args_is_help=True)
app.add_typer(lineage_app, name="lineage")
app.add_typer(models_app, name="models")
app.add_typer(schema_app, name="schema")
app.command("validate")(validate_command)
app.command("audit")(audit_command)
app.command("serve")(serve_command)
app.add_typer(keys_app, name="keys")
app.add_typer(signing_app, name="signing")
app.add_typer(decisions_app, name="decisions")
app.add_typer(threat_app, name="threat-model")
app.command("scan")(scan_command)
app.command("import")(import_command)
app.command("run")(run_command)
app.command("retrain")(retrain_command)
app.command("demo")(demo_command)
app.add_typer(step_app, name="step")
app.command("compile")(compile_command)
add_provenance_commands(models_app)
models_app.command("compare")(models_compare)


@app.command()
def version() -> None:
    """Print the mlwarden version."""
    out.print(__version__)


@lineage_app.command("verify")
def lineage_verify(
    store: StoreOpt = DEFAULT_STORE,
    db_url: DbOpt = None,
    witness: WitnessOpt = None,
    trust: TrustOpt = None,
) -> int:
    """Check every record's hash chain, every artifact's bytes and the signed checkpoints.

    Exits 0 when everything holds, 4 on an integrity failure, 5 when a signature fails.
    """
    if not store.exists():
        raise RecordNotFoundError(f"no store at {store}: run a pipeline first or pass --store")
    lineage = open_store(store, db_url)
    # This machine's own witness (the newest checkpoint it signed here) is always checked.
    local: Path | None = local_witness_path(lineage)
    if local is not None and not local.exists():
        local = None
    witnesses = [*(witness or ()), *([local] if local is not None else [])]
    report = verify_store(lineage, trust=store_trust(lineage, trust), witnesses=witnesses)
    report.problems.extend(model_history_problems(lineage))  # replayed or misordered versions
    if report.ok:
        out.print(report.summary(), soft_wrap=True)
        if witness:
            out.print(f"consistent with {len(witness)} witness(es)", soft_wrap=True)
        if local is not None:
            out.print(
                f"consistent with the checkpoint this machine signed last ({local})", soft_wrap=True
            )
        return 0
    err.print(report.summary(), soft_wrap=True)
    for problem in report.problems[1:10]:
        err.print(f"  also: {problem.message}", soft_wrap=True)
    return exit_code(report)


@lineage_app.command("checkpoint")
def lineage_checkpoint(
    export: ExportOpt, store: StoreOpt = DEFAULT_STORE, db_url: DbOpt = None, trust: TrustOpt = None
) -> int:
    """Export the newest signed checkpoint as a witness, to keep outside the store.

    The store is verified first: a witness of a tampered chain would vouch for it.
    """
    if not store.exists():
        raise RecordNotFoundError(f"no store at {store}: run a pipeline first or pass --store")
    lineage = open_store(store, db_url)
    report = verify_store(lineage, trust=store_trust(lineage, trust))
    if not report.ok:
        err.print(f"not exported: {report.summary()}", soft_wrap=True)
        return exit_code(report)
    newest = lineage.newest_checkpoint()
    if newest is None:
        raise RecordNotFoundError(
            f"the store at {store} holds no signed checkpoint yet: complete a run first"
        )
    write_checkpoint_file(export, [newest])
    out.print(
        f"checkpoint of record {newest.seq} ({newest.hash[:12]}, chain {newest.chain_id[:12]}) "
        f"written to {export}: keep it outside the store, then `lineage verify --witness`",
        soft_wrap=True,
    )
    return 0


def _exec_label(node: TraceNode, seen: set[str]) -> str:
    e = node.produced_by
    if e is None:
        return " [dim](source)[/]"
    if e.id in seen:
        return f" [dim]<-[/] [bold]{e.step}[/] exec {e.id[:12]} [dim](shown above)[/]"
    seen.add(e.id)
    params = json.dumps(e.params, sort_keys=True)
    if len(params) > 400:
        params = params[:397] + "..."
    return (
        f" [dim]<-[/] [bold]{e.step}[/] exec {e.id[:12]} ({e.status}, code {e.code_version[:12]}, "
        f"host {e.host}, {e.started_at:%Y-%m-%d %H:%M:%S}) params {params}"
    )


def _add_upstream(tree: Tree, node: TraceNode, seen: set[str]) -> None:
    a = node.artifact
    role = f"{node.role}: " if node.role else ""
    repeated = a.sha256 in seen and node.produced_by is not None
    label = f"{role}[cyan]{a.name}[/] {a.sha256[:12]} ({a.size:,} B)"
    if repeated:
        tree.add(label + " [dim](traced above)[/]")
        return
    seen.add(a.sha256)
    branch = tree.add(label + _exec_label(node, seen))
    for child in node.inputs:
        _add_upstream(branch, child, seen)


def _add_downstream(tree: Tree, edges: list[UseEdge]) -> None:
    for edge in edges:
        e = edge.execution
        branch = tree.add(f"[bold]{e.step}[/] exec {e.id[:12]} (run {e.run_id[:12]})")
        for artifact, further in edge.outputs:
            child = branch.add(f"[cyan]{artifact.name}[/] {artifact.sha256[:12]}")
            _add_downstream(child, further)


@lineage_app.command("trace")
def lineage_trace(
    ref: Annotated[
        str,
        typer.Argument(help="A model version (NAME@N, NAME@latest) or an artifact hash prefix."),
    ],
    store: StoreOpt = DEFAULT_STORE,
    db_url: DbOpt = None,
    downstream_too: Annotated[
        bool, typer.Option("--downstream", help="Also show what used each artifact.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trace as JSON.")] = False,
) -> None:
    """Show what made a model or artifact (data, code, params, checks), and what used it."""
    lineage = open_store(store, db_url)
    if "@" in ref or not all(c in "0123456789abcdef" for c in ref):
        registry = ModelRegistry(lineage)
        version = registry.get(ref)
        m = version.manifest
        root = Tree(
            f"[bold]{version.ref}[/] registered {m.created_at:%Y-%m-%d %H:%M:%S} "
            f"by run {m.run_id[:12]}; gate {m.gate['mode']} "
            f"{'passed' if m.gate['passed'] else 'FAILED'}; spec {m.spec_sha256[:12]}"
        )
        inputs = [("model", m.model_sha256), *m.artifacts.items()]
        kept_out = rows_kept_out(lineage, m.artifacts)
    else:
        sha = lineage.resolve_artifact(ref)
        root = Tree(f"artifact [bold]{sha[:12]}[/]")
        inputs = [("artifact", sha)]
        kept_out = []
    nodes = [upstream(lineage, sha, role) for role, sha in inputs]
    shas = [sha for _, sha in inputs]
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "ref": ref,
                    "upstream": [n.model_dump(mode="json") for n in nodes],
                    "rows_kept_out": [k.model_dump(mode="json") for k in kept_out],
                    "downstream": {
                        sha: [e.model_dump(mode="json") for e in downstream(lineage, sha)]
                        for sha in shas
                    }
                    if downstream_too
                    else None,
                }
            )
        )
        return
    seen: set[str] = set()
    for node in nodes:
        _add_upstream(root, node, seen)
    out.print(root)
    for group in kept_out:
        reasons = ", ".join(f"{reason} ({n:,})" for reason, n in group.reasons.items())
        rows = ", ".join(map(str, group.rows[:20])) + (" ..." if len(group.rows) > 20 else "")
        out.print(
            f"[bold]kept out of training[/] by {group.step} ({group.artifact_name} "
            f"{group.artifact[:12]}): {len(group.rows):,} input rows: {reasons or 'none'}"
            + (f"\n    rows: {rows}" if group.rows else "")
        )
    if downstream_too:
        for sha in shas:
            used = Tree(f"used by: [cyan]{artifact_info(lineage, sha).name}[/] {sha[:12]}")
            _add_downstream(used, downstream(lineage, sha))
            out.print(used)


@lineage_app.command("log")
def lineage_log(store: StoreOpt = DEFAULT_STORE, db_url: DbOpt = None) -> None:
    """List the pipeline runs in the store, newest last."""
    lineage = open_store(store, db_url)
    ended = {r.subject: r.payload for r in lineage.records("run_ended")}
    table = Table()
    for column in ("run", "pipeline", "started", "status", "model"):
        table.add_column(column)
    for r in lineage.records("run_started"):
        end = ended.get(r.subject, {"status": "interrupted", "model_version": None})
        table.add_row(
            r.subject[:12],
            r.payload["pipeline"],
            f"{r.created_at:%Y-%m-%d %H:%M:%S}",
            end["status"],
            end.get("model_version") or "",
        )
    out.print(table)


@models_app.command("list")
def models_list(
    store: StoreOpt = DEFAULT_STORE, db_url: DbOpt = None, trust: TrustOpt = None
) -> int:
    """List every registered model version; replayed or out-of-order records are marked (exit 4).

    A version whose signer the trust policy does not trust is marked too (exit 5).
    """
    from mlwarden.lineage import TrustPolicy

    registry = ModelRegistry(open_store(store, db_url), TrustPolicy.load(trust))
    versions = registry.versions()
    if not versions:
        out.print("no models registered yet")
        return 0
    policy = registry.policy()
    bad: dict[int, str] = {}
    for name in sorted({v.manifest.name for v in versions}):
        for problem in registry.history(name)[1]:
            bad[problem.seq or 0] = problem.message
    table = Table()
    for column in ("model", "registered", "gate", "f1", "roc_auc", "model sha256", "history"):
        table.add_column(column)
    untrusted: list[str] = []
    for v in versions:
        m = v.manifest
        history = "legacy" if m.legacy else "linked"
        try:
            policy.check(
                v.manifest.signer, v.manifest.message(), v.signature, what=v.ref,
                at_seq=v.record_seq,
            )  # fmt: skip
        except SignatureError:
            history = "[red]UNTRUSTED[/]"
            untrusted.append(f"{v.ref} (key {key_id(v.manifest.signer)})")
        gate = ("passed" if m.gate["passed"] else "[yellow]flagged[/]") + f" ({m.gate['mode']})"
        table.add_row(
            v.ref,
            f"{m.created_at:%Y-%m-%d %H:%M:%S}",
            gate,
            score(m.metrics.get("f1")),
            score(m.metrics.get("roc_auc")),
            m.model_sha256[:12],
            "[red]TAMPERED[/]" if v.record_seq in bad else history,
        )
    out.print(table)
    for message in bad.values():
        err.print(f"[red]tampered:[/] {message}", soft_wrap=True)
    if untrusted:
        err.print(
            f"[red]untrusted:[/] {', '.join(untrusted)} signed by keys the trust policy "
            f"{policy.path} does not trust, or whose signature fails (mlwarden models show NAME@N "
            "says why)",
            soft_wrap=True,
        )
    return 4 if bad else 5 if untrusted else 0


@models_app.command("show")
def models_show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@latest, NAME@N or NAME@STAGE")],
    store: StoreOpt = DEFAULT_STORE,
    db_url: DbOpt = None,
    trust: TrustOpt = None,
) -> None:
    """Verify a model version's signature (by a pinned key) and hashes, then print its manifest."""
    from mlwarden.lineage import TrustPolicy

    registry = ModelRegistry(open_store(store, db_url), TrustPolicy.load(trust))
    version = registry.get(ref)
    registry.verify(version)
    out.print(
        f"[bold]{version.ref}[/]: signature and artifact hashes [green]verified[/] "
        f"(signed by pinned key {key_id(version.manifest.signer)})",
        soft_wrap=True,
    )
    print_warnings(registry.warnings(version))
    if version.manifest.legacy:
        out.print(
            "[yellow]legacy manifest[/] (format 1): not bound to the version before it, so "
            "replay protection starts with the next version registered"
        )
    stage = ref.partition("@")[2]
    staged = bool(stage) and not stage.isdigit() and stage != "latest"
    if staged and registry.is_legacy_promotion(version.manifest.name, stage):
        out.print(
            f"[yellow]legacy promotion[/]: {ref} is not linked to the promotion before it; "
            "promote again to protect the stage from replay"
        )
    out.print_json(
        json.dumps(
            {"manifest": version.manifest.model_dump(mode="json"), "signature": version.signature}
        )
    )


@models_app.command("promote")
def models_promote(
    ref: Annotated[str, typer.Argument(help="NAME@N (or NAME@latest) to promote")],
    stage: Annotated[str, typer.Option("--stage", help="e.g. production, staging")],
    store: StoreOpt = DEFAULT_STORE,
    db_url: DbOpt = None,
    trust: TrustOpt = None,
) -> None:
    """Point NAME@STAGE at a verified version (signed, appended to the lineage chain)."""
    from mlwarden.lineage import TrustPolicy, signer_for_store

    lineage = open_store(store, db_url)
    registry = ModelRegistry(lineage, TrustPolicy.load(trust))
    version = registry.promote(ref, stage, signer_for_store(lineage.root))
    out.print(f"{version.manifest.name}@{stage} -> [bold]{version.ref}[/] (verified, signed)")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; mlwarden errors become one line on stderr and their exit code."""
    try:
        result = app(args=argv, prog_name="mlwarden", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err.print("aborted")
        return 130
    except TyperException as exc:  # usage errors: bad option, missing argument
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err.print(f"error: {exc.format_message()}")
        return exc.exit_code
    except MlwardenError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return exc.exit_code
    finally:
        while OPENED:
            OPENED.pop().close()
    return result if isinstance(result, int) else 0


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())
