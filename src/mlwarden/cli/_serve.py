"""``mlwarden serve``, ``mlwarden keys`` and ``mlwarden decisions``: the guarded server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from mlwarden.cli._signing import TrustOpt, print_warnings
from mlwarden.cli._witness import ExportOpt, WitnessOpt, exit_code, store_trust
from mlwarden.errors import RecordNotFoundError

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

keys_app = typer.Typer(help="Create, list and revoke API keys of the server.", no_args_is_help=True)
decisions_app = typer.Typer(help="Inspect the server's decision log.", no_args_is_help=True)

StoreOpt = Annotated[Path, typer.Option("--store", envvar="MLWARDEN_STORE")]
DbOpt = Annotated[str | None, typer.Option("--db-url", envvar="MLWARDEN_DB_URL")]


def _serve_db(store: Path) -> Path:
    from mlwarden.serve import SERVE_DB

    store.mkdir(parents=True, exist_ok=True)
    return store / SERVE_DB


def serve_command(
    model: Annotated[
        str | None, typer.Argument(help="NAME@VERSION (or NAME@latest) to serve.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Deployment YAML (routes, guards, ...).")
    ] = None,
    output: Annotated[
        str | None, typer.Option("--output", help="probabilities, rounded, top1 or label.")
    ] = None,
    shadow: Annotated[str | None, typer.Option("--shadow", help="A version to mirror.")] = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    store: StoreOpt = Path(".mlwarden"),
    db_url: DbOpt = None,
    trust: TrustOpt = None,
) -> int:
    """Serve a registered model behind the guards; refuses a model that fails verification.

    Every served version must be signed by a key the trust policy pins (``--trust``).
    """
    import uvicorn

    from mlwarden.lineage import LineageStore, Signer, TrustPolicy, exposure_warnings
    from mlwarden.serve import Deployment, build_server, close_server, create_app

    if (model is None) == (config is None):
        raise typer.BadParameter("give a model reference or --config FILE, not both")
    if config is not None:
        deployment = Deployment.from_yaml(config)
    else:
        updates: dict[str, object] = {}
        if output is not None:
            updates["output"] = {"mode": output}
        if shadow is not None:
            updates["shadow"] = shadow
        deployment = Deployment.single(str(model), **updates)
    policy = TrustPolicy.load(trust)
    lineage = LineageStore(store, url=db_url)
    # The decision log's checkpoints are signed with this machine's key if it has one; a
    # server is never the place a key is created.
    signer = Signer.existing()
    try:
        g = build_server(
            lineage, deployment, serve_db=_serve_db(store), trust=policy, signer=signer
        )
    except BaseException:
        lineage.close()
        raise
    signers = {m.version.manifest.signer for m in g.routes}
    print_warnings(sorted({w for s in signers for w in exposure_warnings(store, policy, s)}))
    if signer is None:
        print_warnings(
            [
                "no signing key here: the decision log is kept unsigned (set "
                "$MLWARDEN_SIGNING_KEY, or run a pipeline here once to create a key)"
            ]
        )
    routes = ", ".join(f"{m.ref} (verified)" for m in g.routes)
    out.print(f"serving {routes} on http://{host}:{port}; output {deployment.output.mode}")
    try:
        uvicorn.run(create_app(g), host=host, port=port, log_level="warning")
    finally:
        close_server(g)
        lineage.close()
    return 0


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option("--role", help="predict, feedback, explain or admin.")],
    name: Annotated[str, typer.Option("--name", help="Who or what holds the key.")] = "",
    store: StoreOpt = Path(".mlwarden"),
) -> int:
    """Create a key; it is printed once and only its hash is stored."""
    from mlwarden.serve import KeyStore

    if role not in ("predict", "feedback", "explain", "admin"):
        raise typer.BadParameter(f"role must be predict, feedback, explain or admin, got {role!r}")
    keys = KeyStore(_serve_db(store))
    try:
        chosen: Literal["predict", "feedback", "explain", "admin"] = role  # type: ignore[assignment]
        key = keys.create(chosen, name or role)
    finally:
        keys.close()
    out.print(key)
    err.print("store it now: this key is not shown again (only its hash is kept)")
    return 0


@keys_app.command("list")
def keys_list(store: StoreOpt = Path(".mlwarden")) -> int:
    """Keys with their role and state (never their secret)."""
    from mlwarden.serve import KeyStore

    keys = KeyStore(_serve_db(store))
    try:
        table = Table(title="API keys", title_justify="left")
        for column in ("id", "name", "role", "created", "revoked"):
            table.add_column(column)
        for info in keys.list():
            revoked = info.revoked_at.isoformat(timespec="seconds") if info.revoked_at else ""
            table.add_row(
                info.key_id,
                info.name,
                info.role,
                info.created_at.isoformat(timespec="seconds"),
                revoked,
            )
        out.print(table)
    finally:
        keys.close()
    return 0


# The delay is mlwarden.serve._keys.REVOCATION_DELAY_S (a test keeps the two equal; importing
# it here would load the server's libraries on every CLI start).
@keys_app.command(
    "revoke",
    help=(
        "Revoke a key: recorded, not deleted. A running server refuses it within 5 s "
        "(it trusts a verified key from memory that long); replicas sharing --state, "
        "within a second."
    ),
)
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (the part after mlw_).")],
    store: StoreOpt = Path(".mlwarden"),
    state: Annotated[
        str | None,
        typer.Option("--state", envvar="MLWARDEN_STATE", help="The replicas' redis:// URL."),
    ] = None,
) -> int:
    """Revoke a key: recorded, not deleted; a running server refuses it within seconds."""
    from mlwarden.serve import KeyStore, RevocationNotice

    notice = RevocationNotice(state) if state is not None else None
    keys = KeyStore(_serve_db(store), revocations=notice)
    try:
        info = keys.revoke(key_id)
    finally:
        keys.close()
    out.print(f"revoked {info.key_id} ({info.name}, {info.role})")
    return 0


@decisions_app.command("show")
def decisions_show(
    request_id: Annotated[str, typer.Argument(help="The request id the server returned.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    store: StoreOpt = Path(".mlwarden"),
    db_url: DbOpt = None,
) -> int:
    """Reproduce a past decision on its exact model version, and explain it."""
    from mlwarden.lineage import LineageStore
    from mlwarden.serve import open_decision_log, reproduce_decision

    log = open_decision_log(store)
    try:
        lineage = LineageStore(store, url=db_url)
        try:
            found = reproduce_decision(lineage, log, request_id)
        finally:
            lineage.close()
    finally:
        log.close()
    if as_json:
        out.print_json(json.dumps(found.model_dump(mode="json")))
        return 0 if found.reproduced else 1
    verdict = "[green]reproduced[/]" if found.reproduced else "[red]NOT reproduced[/]"
    out.print(
        f"{found.endpoint} request {found.request_id} from {found.client} at {found.created_at}\n"
        f"model {found.model_ref} (model sha256 {found.model_sha256[:12]}, verified): {verdict}"
    )
    for i, row in enumerate(found.rows):
        out.print(
            f"row {i}: served {row.logged_label!r}, now {row.label!r} (p = {row.probability:.4f})"
        )
        table = Table(title_justify="left")
        for column in ("feature", "value", "typical", "moves p by"):
            table.add_column(column)
        for c in row.contributions:
            table.add_row(c.feature, str(c.value), str(c.typical), f"{c.delta:+.4f}")
        out.print(table)
        if row.shap is not None:
            e = row.shap
            out.print(
                f"SHAP ({e.method}, {e.output} of {row.label!r}): base {e.base_value:+.4f} "
                f"+ values = {e.model_output:+.4f}"
            )
            shap_table = Table(title_justify="left")
            for column in ("feature", "value", "SHAP"):
                shap_table.add_column(column)
            for v in e.values[:5]:
                shap_table.add_row(v.feature, str(v.value), f"{v.shap:+.4f}")
            out.print(shap_table)
    for f in found.feedback:
        out.print(f"feedback by {f['analyst']} at {f['created_at']}: {f['labels']}")
    return 0 if found.reproduced else 1


@decisions_app.command("verify")
def decisions_verify(
    store: StoreOpt = Path(".mlwarden"), witness: WitnessOpt = None, trust: TrustOpt = None
) -> int:
    """Check the decision log's chains and signed checkpoints; name the first bad row.

    Exits 0 when everything holds, 4 on an integrity failure, 5 when a signature fails.
    """
    from mlwarden.serve import open_decision_log

    log = open_decision_log(store)
    try:
        report = log.verify(trust=store_trust(None, trust), witnesses=witness or ())
    finally:
        log.close()
    if not report.ok:
        err.print(report.summary(), soft_wrap=True)
        for problem in report.problems[1:10]:
            err.print(f"  also: {problem.message}", soft_wrap=True)
        return exit_code(report)
    out.print(report.summary(), soft_wrap=True)
    if not report.checkpointed:
        out.print(
            "unsigned: the log holds no signed checkpoint (the server had no signer), so only "
            "the chains were verified; rows cut off the end are found only with --witness",
            soft_wrap=True,
        )
    if witness:
        out.print(f"consistent with {len(witness)} witness(es)", soft_wrap=True)
    return 0


@decisions_app.command("checkpoint")
def decisions_checkpoint(
    export: ExportOpt, store: StoreOpt = Path(".mlwarden"), trust: TrustOpt = None
) -> int:
    """Export the decision log's newest signed checkpoints as a witness, to keep elsewhere.

    The log is verified first: a witness of a tampered log would vouch for it.
    """
    from mlwarden.lineage import write_checkpoint_file
    from mlwarden.serve import open_decision_log

    log = open_decision_log(store)
    try:
        report = log.verify(trust=store_trust(None, trust))
        newest = log.newest_checkpoints() if report.ok else []
    finally:
        log.close()
    if not report.ok:
        err.print(f"not exported: {report.summary()}", soft_wrap=True)
        return exit_code(report)
    if not newest:
        raise RecordNotFoundError(
            f"the decision log under {store} holds no signed checkpoint yet "
            "(the server needs a signer)"
        )
    write_checkpoint_file(export, newest)
    held = ", ".join(f"{c.chain} {c.seq}" for c in newest)
    out.print(f"checkpoints of {held} written to {export}: keep it outside the store")
    return 0
