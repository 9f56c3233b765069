"""The import step: scan a model file the run read as a source, load it safely, convert it.

It stands where ``train`` stands: its ``model`` output is what evaluate, audit and register
read. Beside it, the scan report (``scan``) and what was imported (``imported``) are kept as
artifacts, so the registered version's lineage names the original file's hash and its scan.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlwarden.audit import Finding
from mlwarden.errors import CapabilityError, SpecError
from mlwarden.models import (
    ONNX_MEDIA_TYPE,
    STATE_DICT_MEDIA_TYPE,
    TORCH_MEDIA_TYPE,
    ScanPolicy,
    import_model_file,
    scan_file,
)
from mlwarden.pipeline._context import Output, StepContext
from mlwarden.pipeline._io import JSON, Outputs, json_bytes

_SUFFIX = {"sklearn-pickle": "skops", "skops": "skops", "onnx": "onnx", "torch": "safetensors"}


def scan_finding(unsafe: int, fmt: str, globals_seen: int) -> Finding:
    """The scan as a gate check: no finding at medium or above may remain."""
    return Finding(
        check="model_scan",
        metric="unsafe findings",
        value=float(unsafe),
        threshold=0.0,
        comparison="<=",
        verdict="pass" if unsafe == 0 else "fail",
        n=None,
        message=f"{fmt}: {unsafe} finding(s) at medium or above; "
        f"{globals_seen} global(s) referenced, all on the allowlist"
        if unsafe == 0
        else f"{fmt}: {unsafe} finding(s) at medium or above",
    )


def _matrix_columns(ctx: StepContext) -> list[str] | None:
    """The column order a model that reads one numeric matrix takes: the spec's ``columns``,
    else the table's header without the label; None imported without a table or columns.

    Recorded with the import, so evaluation, audits and the server feed the columns the model
    was fitted on, not the store's (alphabetical) schema order.
    """
    given: list[str] | None = ctx.params.get("columns")
    if "info" not in ctx.run["input_sha"]:
        return given
    table = ctx.json("info")
    features = [c for c in table["columns"] if c != table["label"]]
    if given is None:
        return features
    unknown = [c for c in given if c not in features]
    absent = [c for c in features if c not in given]
    if unknown or absent or len(set(given)) != len(given):
        raise SpecError(
            f"model.columns must name each feature column of the table once (in the order the "
            f"model reads them); not in the table: {unknown[:5]}, left out: {absent[:5]}"
            + (", repeated names" if len(set(given)) != len(given) else "")
        )
    return given


def import_model(ctx: StepContext) -> Outputs:
    """Scan the source model file, load it through its safe path and convert it.

    ``runnable`` (a tabular pipeline) refuses what mlwarden cannot run: a torch state dict.
    """
    policy = ScanPolicy.model_validate(ctx.params["scan_policy"])
    name = Path(ctx.params["source"]).name
    with tempfile.TemporaryDirectory(prefix="mlwarden-import-") as folder:
        path = Path(folder) / name
        path.write_bytes(ctx.input("model"))
        report = scan_file(path, policy).model_copy(update={"file": name})
        ctx.progress(f"scanned {name}: {report.format}, {report.verdict}")
        imported = import_model_file(path, policy, report=report)
    if ctx.params["runnable"] and imported.media_type == STATE_DICT_MEDIA_TYPE:
        raise CapabilityError(
            f"{name} is a torch state dict: weights without the network's code, which this "
            "pipeline cannot evaluate or audit; export the model to ONNX (torch.onnx.export) "
            "and import the .onnx file, or import the state dict alone with mlwarden import"
        )
    info = imported.info()
    if imported.media_type in (ONNX_MEDIA_TYPE, TORCH_MEDIA_TYPE):
        columns = _matrix_columns(ctx)
        if columns is not None:
            info["columns"] = columns
    ctx.progress(f"imported {info.get('estimator', imported.kind)} as {imported.media_type}")
    unsafe = sum(f.unsafe for f in report.findings)
    finding = scan_finding(unsafe, report.format, len(report.globals))
    return {
        "model": Output(imported.data, imported.media_type, f"model.{_SUFFIX[imported.kind]}"),
        "scan": Output(json_bytes(report.summary()), JSON, "scan.json"),
        "imported": Output(json_bytes(info), JSON, "import.json"),
        "findings": Output(json_bytes([finding.model_dump(mode="json")]), JSON, "findings.json"),
    }
