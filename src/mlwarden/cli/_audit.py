"""``mlwarden audit``: put one model through the check suite, outside a pipeline."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from mlwarden.audit import CHECK_GROUPS, DEFAULT_GROUPS
from mlwarden.cli._model_file import MODEL_SUFFIXES, refuse_unsafe, scan_policy_of
from mlwarden.cli._signing import TrustOpt, print_warnings
from mlwarden.errors import DataError, SpecError

if TYPE_CHECKING:
    import pandas as pd

    from mlwarden.audit import CheckContext, Finding
    from mlwarden.models import ModelAdapter, ModelRegistry, ModelVersion, ScanPolicy, ScanReport

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

#: Default limit of ``--checks canary``: 10 bits means the secret ranks in the model's top
#: thousandth of the candidate space, far above a never-seen secret's exposure of about 1 bit.
DEFAULT_MAX_EXPOSURE = 10.0


def _policy(
    checks: str | None, policy: Path | None, threat_model: Path | None = None
) -> list[tuple[str, dict[str, Any]]]:
    from mlwarden.audit import CHECKS

    if policy is not None:
        try:
            raw = yaml.safe_load(policy.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise SpecError(f"cannot read policy {policy}: {exc}") from exc
        entries = raw.get("checks") if isinstance(raw, dict) else raw
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and "check" in e for e in entries
        ):
            raise SpecError(f"{policy}: expected a list of checks, each with a 'check' key")
        chosen = [(e["check"], _relative_to(policy, e)) for e in entries]
    else:
        chosen = []
        for name in (checks or ",".join(DEFAULT_GROUPS)).split(","):
            name = name.strip()
            if name == "evasion" and threat_model is not None:
                ((key, params),) = CHECK_GROUPS[name]
                chosen.append((key, {**params, "threat_model": str(threat_model)}))
            elif name in CHECK_GROUPS:
                chosen += CHECK_GROUPS[name]
            elif name in CHECKS:
                raise SpecError(
                    f"check {name!r} needs thresholds: list it in a --policy file "
                    "(check: NAME plus its parameters)"
                )
            else:
                known = ", ".join(sorted(CHECK_GROUPS))
                raise SpecError(f"unknown check group {name!r}; use one of {known} or --policy")
    unknown = [key for key, _ in chosen if key not in CHECKS]
    if unknown:
        raise SpecError(f"unknown check(s) {unknown}; known: {', '.join(sorted(CHECKS))}")
    return chosen


def _relative_to(policy: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """A policy entry's parameters, a relative threat-model path resolved against the policy
    file's folder (as a pipeline spec's paths are against the spec's)."""
    params = {k: v for k, v in entry.items() if k != "check"}
    named = params.get("threat_model")
    if isinstance(named, str) and named.endswith((".yaml", ".yml")):
        path = Path(named)
        params["threat_model"] = str(path if path.is_absolute() else policy.parent / path)
    return params


def _table(source: str) -> pd.DataFrame:
    import pandas as pd

    from mlwarden.cli._data import read_table

    if source.endswith(".parquet"):
        try:
            return pd.read_parquet(source)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {source}: {exc}") from exc
    return read_table(source)[0]


def _registry(store: Path, db_url: str | None, trust: Path | None) -> ModelRegistry:
    """The store's registry, verifying with the trust policy ``--trust`` (or the default)."""
    from mlwarden.lineage import LineageStore, TrustPolicy
    from mlwarden.models import ModelRegistry

    return ModelRegistry(LineageStore(store, url=db_url), TrustPolicy.load(trust))


def _load_registered(registry: ModelRegistry, ref: str) -> tuple[ModelVersion, ModelAdapter]:
    """A registered version and its model's adapter, verified first: scikit-learn (skops), an
    imported ONNX model or a torch classifier saved with its architecture; an imported torch
    state dict is refused with how to export it."""
    from mlwarden.models import (
        ONNX_MEDIA_TYPE,
        STATE_DICT_MEDIA_TYPE,
        TORCH_MEDIA_TYPE,
        adapter_for,
    )

    version = registry.get(ref)
    media_type = version.manifest.model_media_type
    if media_type in (ONNX_MEDIA_TYPE, TORCH_MEDIA_TYPE):
        return registry.load_classifier(ref)
    if media_type != STATE_DICT_MEDIA_TYPE:
        return registry.load(ref)
    registry.verify(version)
    data = registry.store.read_artifact(version.manifest.model_sha256)
    return version, adapter_for(data, media_type)  # refused, saying how to export it


def _registered_context(
    ref: str,
    store: Path,
    db_url: str | None,
    seed: int,
    trust: Path | None = None,
    table: tuple[str | None, str | None] = (None, None),
) -> tuple[CheckContext, dict[str, Any]]:
    """A registered version's model (verified), its own training and held-out splits, and what
    its manifest says of where it came from (for the report). A model imported without data
    has no splits: it is audited on ``table`` (--data, --label)."""
    import pandas as pd

    from mlwarden.audit import CheckContext
    from mlwarden.data import TableSchema

    registry = _registry(store, db_url, trust)
    lineage = registry.store
    try:
        version, model = _load_registered(registry, ref)
    except BaseException:
        lineage.close()
        raise
    print_warnings(registry.warnings(version))
    arts = version.manifest.artifacts
    manifest = version.manifest
    audited = {
        "registered": True,
        "ref": version.ref,
        "run_id": manifest.run_id,
        "spec_sha256": manifest.spec_sha256,
        "lineage_head": manifest.lineage_head,
        "model_sha256": manifest.model_sha256,
        "signer": manifest.signer,
        "artifacts": dict(manifest.artifacts),
    }
    if "train" not in arts:  # imported without a table (mlwarden import FILE --name NAME)
        data, label = table
        if data is None or label is None:
            raise typer.BadParameter(
                f"{version.ref} was imported without data, so it has no held-out split: "
                "give --data and --label to audit it"
            )
        return _one_table_context(model, _labelled(data, label), label, seed), audited
    schema = TableSchema.model_validate_json(lineage.read_artifact(arts["schema"]))
    metrics = json.loads(lineage.read_artifact(arts["metrics"]))
    label = schema.label or ""

    def split(role: str) -> tuple[pd.DataFrame, pd.Series]:
        frame = pd.read_parquet(io.BytesIO(lineage.read_artifact(arts[role])))
        drop = [c for c in (label, "_row") if c in frame.columns]
        return frame.drop(columns=drop), frame[label]

    (X_train, y_train), (X_test, y_test) = split("train"), split("test")
    ctx = CheckContext(
        model, X_train, y_train, X_test, y_test, metrics.get("positive"), schema, seed
    )
    return ctx, audited


def _file_context(
    model_path: Path, data: str, label: str, seed: int, report: ScanReport, rules: ScanPolicy
) -> tuple[CheckContext, dict[str, Any]]:
    """A model file, scanned then loaded through its safe path, audited on one labelled table;
    with what was audited (for the report)."""
    from mlwarden.models import model_file_adapter

    frame = _labelled(data, label)
    columns = [str(c) for c in frame.columns if c != label]
    adapter, imported = model_file_adapter(model_path, columns, rules, report)
    info = imported.info()
    out.print(
        f"loaded {info.get('estimator', imported.kind)} from {model_path} ({report.format}, "
        f"scanned safe) through {_LOADERS[imported.kind]}",
        soft_wrap=True,
    )
    audited = {"registered": False, "path": str(model_path), **info, "scan": report.verdict}
    return _one_table_context(adapter, frame, label, seed), audited


def _labelled(data: str, label: str) -> pd.DataFrame:
    """The table ``data``, which must hold the ``label`` column."""
    frame = _table(data)
    if label not in frame.columns:
        raise DataError(f"label column {label!r} is not in {data}; columns: {list(frame.columns)}")
    return frame


def _one_table_context(
    adapter: ModelAdapter, frame: pd.DataFrame, label: str, seed: int
) -> CheckContext:
    """Checks on one labelled table, the columns the model was fitted on in its order."""
    from mlwarden.audit import CheckContext
    from mlwarden.models import fitted_columns

    X, y = fitted_columns(adapter, frame.drop(columns=[label])), frame[label]
    # One table: it serves as both splits, so train-versus-test checks compare it with itself.
    return CheckContext(adapter, X, y, X, y, None, None, seed)


_LOADERS = {
    "sklearn-pickle": "the restricted unpickler (allowlisted types only)",
    "skops": "skops (trusted types only)",
    "onnx": "onnxruntime",
    "torch": "torch.load(weights_only=True)",
}


def _model_file(model: str) -> Path | None:
    """``--model`` as a file path, or None for a registered NAME@VERSION; a path that names a
    model file but does not exist is a ``DataError``, not an unknown model name."""
    path = Path(model)
    if path.is_file():
        return path
    if "@" not in model and (path.suffix.lower() in MODEL_SUFFIXES or "/" in model):
        raise DataError(
            f"model file {model} does not exist; --model takes a model file (pickle, joblib, "
            "skops, ONNX) or NAME@VERSION of a registered model"
        )
    return None


def audit_command(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="NAME@VERSION in the store, or a model file (pickle, joblib, skops, ONNX), "
            "scanned before it is loaded.",
        ),
    ],
    data: Annotated[
        str | None, typer.Option("--data", help="Table for a model file: CSV, Parquet or dataset.")
    ] = None,
    label: Annotated[str | None, typer.Option("--label", help="Label column of --data.")] = None,
    checks: Annotated[
        str | None,
        typer.Option(
            "--checks",
            help=f"Comma list of groups: {', '.join(CHECK_GROUPS)} (default: "
            f"{','.join(DEFAULT_GROUPS)}); or canary (a language model), or slowdown (an "
            "early-exit network).",
        ),
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="YAML list of checks with thresholds.")
    ] = None,
    threat_model: Annotated[
        Path | None,
        typer.Option(
            "--threat-model",
            help="For --checks evasion: the threat model YAML for these columns "
            "(make one with: mlwarden threat-model init DATA --label COL).",
        ),
    ] = None,
    on_inconclusive: Annotated[
        str,
        typer.Option(
            "--on-inconclusive",
            help="What an inconclusive check (too few points to decide) does: fail (exit 1), "
            "warn (exit 0, flagged) or pass.",
        ),
    ] = "warn",
    store: Annotated[Path, typer.Option("--store", envvar="MLWARDEN_STORE")] = Path(".mlwarden"),
    db_url: Annotated[str | None, typer.Option("--db-url", envvar="MLWARDEN_DB_URL")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where the reports go.")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    trust: TrustOpt = None,
    scan_policy: Annotated[
        Path | None,
        typer.Option("--scan-policy", help="For a model file: scan policy YAML (allow_globals)."),
    ] = None,
    canaries: Annotated[
        Path | None,
        typer.Option("--canaries", help="For --checks canary: canary lines, one per line."),
    ] = None,
    max_exposure: Annotated[
        float, typer.Option("--max-exposure", help="For --checks canary: most bits allowed.")
    ] = DEFAULT_MAX_EXPOSURE,
    max_reduction: Annotated[
        float,
        typer.Option(
            "--max-efficacy-reduction", help="For --checks slowdown: most percent allowed."
        ),
    ] = 50.0,
    eps: Annotated[
        float, typer.Option("--eps", help="For --checks slowdown: the attack's L-inf radius.")
    ] = 0.2,
) -> int:
    """Run checks (evasion, shortcuts, overconfidence, ...) on one model and gate on them."""
    from mlwarden.audit import run_check

    if checks is not None and "slowdown" in [c.strip() for c in checks.split(",")]:
        if checks.strip() != "slowdown":
            raise SpecError("--checks slowdown is for early-exit networks: give it on its own")
        return _audit_early_exit(model, max_reduction, eps, store, db_url, out_dir, seed, trust)
    if checks is not None and "canary" in [c.strip() for c in checks.split(",")]:
        if checks.strip() != "canary":
            raise SpecError("--checks canary is for language models: give it on its own")
        if canaries is None:
            raise typer.BadParameter("--checks canary needs --canaries FILE (one line each)")
        return _audit_language_model(
            model, canaries, max_exposure, store, db_url, out_dir, seed, trust
        )
    if on_inconclusive not in ("fail", "warn", "pass"):
        raise typer.BadParameter("--on-inconclusive takes fail, warn or pass")
    chosen = _policy(checks, policy, threat_model)
    model_path = _model_file(model)
    audited: dict[str, Any] | None
    if model_path is not None:
        from mlwarden.models import scan_file

        rules = scan_policy_of(scan_policy)
        report = scan_file(model_path, rules)
        if not report.safe:
            return refuse_unsafe(report)
        if data is None or label is None:
            raise typer.BadParameter("a model file needs --data and --label")
        ctx, audited = _file_context(model_path, data, label, seed, report, rules)
        name = model_path.stem
    else:
        ctx, audited = _registered_context(model, store, db_url, seed, trust, (data, label))
        name = model.replace("@", "-")
        if data is not None and "train" in audited["artifacts"]:
            # audit on this table instead of the recorded held-out split
            frame = _table(data)
            target = label or str(ctx.y_test.name)
            if target not in frame.columns:
                raise DataError(
                    f"label column {target!r} is not in {data}; columns: {list(frame.columns)}"
                )
            ctx = replace(ctx, X_test=frame[list(ctx.X_test.columns)], y_test=frame[target])
    if threat_model is None and policy is None:
        _bundled_threat_model_fits(chosen, ctx, data, label)
    findings = []
    for key, params in chosen:
        with out.status(f"{key} ..."):
            finding = run_check(key, params, ctx)
        out.print(f"  {_MARKS[finding.verdict]} {key}: {finding.message}")
        _print_tables(finding)
        findings.append(finding)
    return _gate_and_report(
        model, name, findings, out_dir, str(policy) if policy else None, on_inconclusive, audited
    )


def _audit_language_model(
    ref: str,
    canaries: Path,
    max_exposure: float,
    store: Path,
    db_url: str | None,
    out_dir: Path | None,
    seed: int,
    trust: Path | None = None,
) -> int:
    """The canary check on a registered character language model (verified before loading)."""
    from mlwarden.audit import CanaryCheck, canary_check
    from mlwarden.pipeline import canary_lines

    try:
        lines = canary_lines(canaries.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read canaries file {canaries}: {exc}") from exc
    if not lines:
        raise DataError(f"{canaries} lists no canary lines (blank lines and # comments skipped)")
    _, lm = _registry(store, db_url, trust).load_language_model(ref)
    with out.status(f"canary exposure of {len(lines)} lines ..."):
        finding = canary_check(CanaryCheck(max_exposure=max_exposure), lm, lines, seed=seed)
    out.print(f"  {_MARKS[finding.verdict]} canary: {finding.message}")
    table = Table(title="canary exposure", title_justify="left")
    columns = finding.details["tables"][0]["columns"]
    for column in columns:
        table.add_column(column)
    for row in finding.details["tables"][0]["rows"]:
        table.add_row(*(str(v) for v in row))
    out.print(table)
    return _gate_and_report(ref, ref.replace("@", "-"), [finding], out_dir, str(canaries))


def _audit_early_exit(
    ref: str,
    max_reduction: float,
    eps: float,
    store: Path,
    db_url: str | None,
    out_dir: Path | None,
    seed: int,
    trust: Path | None = None,
) -> int:
    """DeepSloth on a registered early-exit network, at its serving threshold, on its test split."""
    from mlwarden.audit import SlowdownCheck, slowdown_check
    from mlwarden.models import load_digits_split

    _, model, info = _registry(store, db_url, trust).load_early_exit(ref)
    split = load_digits_split(test_size=info["test_size"], seed=info["seed"])
    params = SlowdownCheck(max_efficacy_reduction=max_reduction, eps=eps)
    with out.status(f"DeepSloth on {ref} ..."):
        finding = slowdown_check(params, model, split.X_test, split.y_test, info["threshold"], seed)
    out.print(f"  {_MARKS[finding.verdict]} slowdown: {finding.message}")
    return _gate_and_report(ref, ref.replace("@", "-"), [finding], out_dir, None)


def _gate_and_report(
    model: str,
    name: str,
    findings: list[Finding],
    out_dir: Path | None,
    policy: str | None,
    on_inconclusive: str = "warn",
    audited: dict[str, Any] | None = None,
) -> int:
    """Print the findings, gate them fail-closed, write the reports; the exit code."""
    from mlwarden._version import __version__
    from mlwarden.audit import apply_gate
    from mlwarden.report import CheckLine, RunReport, write_report

    gate = apply_gate(findings, "fail-closed", on_inconclusive)  # type: ignore[arg-type]
    table = Table(title=f"audit of {model}", title_justify="left")
    for column in ("check", "measured [95% interval]", "n", "threshold", "verdict"):
        table.add_column(column)
    table.add_column("queries", justify="right")
    for f in findings:
        n = "-" if f.n is None else f"{f.n:,}"
        table.add_row(f.check, f.shown, n, f"{f.comparison} {f.threshold:g}",
                      _MARKS[f.verdict], f"{f.queries:,}")  # fmt: skip
    out.print(table)
    report = RunReport(
        pipeline=f"audit-{name}", description=f"mlwarden audit of {model}",
        run_id=datetime.now(UTC).strftime("%Y%m%dT%H%M%S"), status="completed" if gate.passed
        else "failed" if not gate.allow_registration else "inconclusive",
        error=None if gate.passed else gate.summary(),
        created_at=datetime.now(UTC), seconds=sum(f.wall_time_s for f in findings),
        spec_sha256="", model_version=model, gate=gate.model_dump(mode="json"), metrics=None,
        search=None, validation=None,
        checks=[CheckLine.model_validate(f.model_dump()) for f in findings], steps=[],
        lineage_head=None, spec_path=policy, audited=audited,
    )  # fmt: skip
    folder = out_dir or Path("mlwarden-audit") / name
    json_path, html_path = write_report(report, folder, tool_version=__version__)
    # Paths are printed whole: a wrapped path cannot be copied.
    out.print(f"report: {html_path}", soft_wrap=True)
    out.print(f"        {json_path} (+ report.sarif, report.junit.xml)", soft_wrap=True)
    if not gate.allow_registration:
        err.print(f"[red]FAILED:[/] {gate.summary()}")
        return 1
    if not gate.passed:
        err.print(
            f"[yellow]INCONCLUSIVE[/] (--on-inconclusive {on_inconclusive}): {gate.summary()}"
        )
        return 0
    out.print("[green]all checks passed[/]")
    return 0


_MARKS = {
    "pass": "[green]pass[/]",
    "fail": "[red]FAIL[/]",
    "inconclusive": "[yellow]INCONCLUSIVE[/]",
}


def _print_tables(finding: Finding) -> None:
    """The finding's own tables (evasion: cheapest changes and features used; extraction: cost
    by serving option; membership: the attacks), as the HTML report shows them."""
    for spec in finding.details.get("tables", []):
        table = Table(title=f"{finding.check}: {spec['title']}", title_justify="left")
        for column in spec["columns"]:
            table.add_column(str(column))
        for row in spec["rows"]:
            table.add_row(*("n/a" if v is None else str(v) for v in row))
        out.print(table)


def _bundled_threat_model_fits(
    chosen: list[tuple[str, dict[str, Any]]],
    ctx: CheckContext,
    data: str | None,
    label: str | None,
) -> None:
    """``--checks evasion`` without ``--threat-model`` uses the bundled phishing threat model:
    refuse, in one line, a table it was not written for."""
    if not any(key == "evasion" for key, _ in chosen):
        return
    from mlwarden.attacks import bundled_threat_model

    threat = bundled_threat_model("phishing")
    missing = [f for f in threat.features if f not in ctx.X_test.columns]
    if missing:
        source, column = data or "DATA", label or ctx.y_test.name
        raise SpecError(
            f"evasion needs a threat model for these columns ({len(missing)} of the bundled "
            f"phishing threat model's {len(threat.features)} features are not in the table): "
            f"make one with `mlwarden threat-model init {source} --label {column} "
            "--out threat.yaml`, set its costs, then pass --threat-model threat.yaml"
        )
