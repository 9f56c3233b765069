"""From a spec to the DAG of steps: each with its function, parameters, inputs and outputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from graphlib import CycleError, TopologicalSorter
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mlwarden.data import TableSchema, list_datasets
from mlwarden.errors import DataError, SpecError
from mlwarden.models import EARLY_EXIT_MEDIA_TYPE, LANGUAGE_MODEL_MEDIA_TYPE, MEDIA_TYPE
from mlwarden.pipeline import _data_steps, _early_exit, _import_step, _lm, _steps
from mlwarden.pipeline._code_version import code_version
from mlwarden.pipeline._context import Output, StepContext
from mlwarden.pipeline._early_exit_spec import EarlyExitSpec
from mlwarden.pipeline._import_spec import ImportSource, ImportSpec
from mlwarden.pipeline._io import CSV, JSON, json_bytes
from mlwarden.pipeline._lm_spec import LanguageModelSpec
from mlwarden.pipeline._spec import (
    AnySpec,
    PipelineSpec,
    is_threat_model_path,
    threat_model_fields,
)

StepFn = Callable[[StepContext], dict[str, Output]]
SOURCE = "source"
_YAML = "application/yaml"


@dataclass(frozen=True)
class StepDef:
    """One node of the pipeline DAG.

    ``inputs`` maps a role to ``"<step>.<output>"`` (or ``"source.<name>"`` for a file the
    pipeline reads from outside); ``params`` is the slice of the spec the step depends on.
    """

    name: str
    fn: StepFn
    inputs: dict[str, str]
    outputs: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)
    #: The step registers a model version: the run reports the version it recorded.
    registers: bool = False

    @cached_property
    def code_version(self) -> str:
        """Hash of all mlwarden code the step function can reach (see ``_code_version``)."""
        return code_version(self.fn)


def _gate_and_register(
    spec: AnySpec,
    recorded: dict[str, str],
    media_type: str = MEDIA_TYPE,
    model: str = "train.model",
    findings: str = "audit.findings",
) -> list[StepDef]:
    """The tail every pipeline ends with: the gate on ``findings``, then the register step of
    ``model`` (``media_type`` says what it is, unless ``recorded`` holds an import's
    ``imported`` record), keeping ``recorded`` in its manifest."""
    return [
        StepDef("gate", _steps.gate, {"findings": findings}, ("gate",), spec.gate.model_dump()),
        StepDef(
            "register",
            _steps.register,
            {"model": model, "gate": "gate.gate", "findings": findings, **recorded},
            (),
            {"name": spec.registry.name, "media_type": media_type},
            registers=True,
        ),
    ]


def build_lm_steps(spec: LanguageModelSpec) -> tuple[list[StepDef], dict[str, Output]]:
    """The steps of a language-model spec: plant, train, audit, gate, register."""
    params = _lm.lm_step_params(spec)
    steps = [
        StepDef(
            "plant",
            _lm.plant,
            {"corpus": f"{SOURCE}.corpus", "canaries": f"{SOURCE}.canaries"},
            ("text", "canaries"),
            params["plant"],
        ),
        StepDef(
            "train", _lm.train_lm, {"text": "plant.text"}, ("model", "training"), params["train"]
        ),
        StepDef(
            "audit",
            _lm.audit_lm,
            {"model": "train.model", "canaries": "plant.canaries"},
            ("findings",),
            params["audit"],
        ),
        *_gate_and_register(
            spec,
            {"training": "train.training", "text": "plant.text", "canaries": "plant.canaries"},
            LANGUAGE_MODEL_MEDIA_TYPE,
        ),
    ]
    return _ordered(steps), _lm.lm_sources(spec)


def build_early_exit_steps(spec: EarlyExitSpec) -> tuple[list[StepDef], dict[str, Output]]:
    """The steps of an early-exit spec: train, audit, gate, register."""
    params = _early_exit.early_exit_step_params(spec)
    steps = [
        StepDef("train", _early_exit.train_early_exit, {}, ("model", "info"), params["train"]),
        StepDef(
            "audit",
            _early_exit.audit_early_exit,
            {"model": "train.model", "info": "train.info"},
            ("findings",),
            params["audit"],
        ),
        *_gate_and_register(spec, {"info": "train.info"}, EARLY_EXIT_MEDIA_TYPE),
    ]
    return _ordered(steps), {}


_IMPORTED = {"scan": "import.scan", "imported": "import.imported", "original": f"{SOURCE}.model"}


def _import_def(source: ImportSource, sources: dict[str, Output], runnable: bool) -> StepDef:
    """The step that scans and imports ``source``'s file, read now as the run's source."""
    try:
        data = source.path.read_bytes()
    except OSError as exc:
        raise SpecError(
            f"model.import: cannot read {source.path}: {exc.strerror or exc}; expected a model "
            "file (pickle, joblib, skops, ONNX or a torch state dict)"
        ) from None
    sources["model"] = Output(data, "application/octet-stream", source.path.name)
    # a model imported with its table learns the order its columns are read in from the table
    table = {"info": "ingest.info"} if runnable else {}
    return StepDef(
        "import",
        _import_step.import_model,
        {"model": f"{SOURCE}.model", **table},
        ("model", "scan", "imported", "findings"),
        {
            "source": source.path.name,
            "scan_policy": source.scan_policy.model_dump(mode="json"),
            "runnable": runnable,
            "columns": source.columns,
        },
    )


def build_import_steps(spec: ImportSpec) -> tuple[list[StepDef], dict[str, Output]]:
    """The steps of an import alone: import (scan, safe load, convert), gate on the scan,
    register."""
    sources: dict[str, Output] = {}
    steps = [
        _import_def(spec.model, sources, runnable=False),
        *_gate_and_register(spec, _IMPORTED, model="import.model", findings="import.findings"),
    ]
    return _ordered(steps), sources


def _threat_model_sources(spec: PipelineSpec) -> dict[tuple[str | int, ...], Output]:
    """The threat-model files the spec names, by field, read as pipeline sources.

    They are hashed into the cache key of the steps that use them and recorded in lineage like
    the data. A bundled name reads the file shipped with mlwarden; an unknown name is left to
    the step, whose check fails saying so.
    """
    found: dict[tuple[str | int, ...], Output] = {}
    for loc, value in threat_model_fields(spec).items():
        if is_threat_model_path(value):
            path = Path(value)
            try:
                data = path.read_bytes()
            except OSError as exc:
                field = ".".join(str(p) for p in loc)
                raise SpecError(
                    f"{field}: cannot read threat model file {path}: {exc.strerror or exc}"
                ) from None
            found[loc] = Output(data, _YAML, path.name)
        else:
            bundled = resources.files("mlwarden").joinpath("_specs", f"{value}_threat_model.yaml")
            if bundled.is_file():
                found[loc] = Output(bundled.read_bytes(), _YAML, bundled.name)
    return found


def build_steps(spec: AnySpec) -> tuple[list[StepDef], dict[str, Output]]:
    """The steps of ``spec`` in dependency order, and the outside files they read."""
    if isinstance(spec, LanguageModelSpec):
        return build_lm_steps(spec)
    if isinstance(spec, EarlyExitSpec):
        return build_early_exit_steps(spec)
    if isinstance(spec, ImportSpec):
        return build_import_steps(spec)
    d = spec.data
    sources: dict[str, Output] = {}
    if d.path is not None:
        if not d.path.is_file():
            raise DataError(f"data.path: file {d.path} does not exist")
        try:
            with d.path.open("rb"):  # streamed into the store later: say now if it cannot be
                pass
        except OSError as exc:
            raise DataError(f"data.path: cannot read {d.path}: {exc}") from exc
        sources["table"] = Output(d.path, CSV, d.path.name)
    if isinstance(d.schema_file, TableSchema):
        sources["schema"] = Output(json_bytes(d.schema_file), JSON, "schema.json")
    elif d.schema_file is not None:
        schema = TableSchema.from_yaml(d.schema_file)
        sources["schema"] = Output(json_bytes(schema), JSON, d.schema_file.name)
    if d.drift is not None and d.drift.reference not in list_datasets():
        reference = Path(d.drift.reference)
        try:
            sources["reference"] = Output(reference.read_bytes(), CSV, reference.name)
        except OSError as exc:
            raise DataError(f"data.drift.reference: cannot read {reference}: {exc}") from exc
    if d.feedback is not None:
        try:
            sources["feedback"] = Output(d.feedback.read_bytes(), CSV, d.feedback.name)
        except OSError as exc:
            raise DataError(f"data.feedback: cannot read {d.feedback}: {exc}") from exc
    threat_models = {
        ".".join(str(p) for p in loc): out for loc, out in _threat_model_sources(spec).items()
    }
    sources.update(threat_models)
    harden_source = "train.harden.threat_model"
    train_threat = {"threat_model": f"{SOURCE}.{harden_source}"} if harden_source in sources else {}
    check_threats = {n: f"{SOURCE}.{n}" for n in threat_models if n.startswith("checks.")}
    steps = [
        StepDef(
            "ingest",
            _data_steps.ingest,
            {
                role: f"{SOURCE}.{name}"
                for role, name in (
                    ("source", "table"),
                    ("schema", "schema"),
                    ("feedback", "feedback"),
                )
                if name in sources
            },
            ("raw", "schema", "info"),
            {
                "dataset": d.dataset,
                "path": str(d.path) if d.path else None,
                "label": d.label,
                "positive": d.positive,
                "has_schema": "schema" in sources,
                "has_feedback": "feedback" in sources,
                "sep": d.sep,
                "classes": d.classes,
            },
        ),
        StepDef(
            "validate",
            _data_steps.validate,
            {
                "raw": "ingest.raw",
                "schema": "ingest.schema",
                "info": "ingest.info",
                **({"reference": f"{SOURCE}.reference"} if "reference" in sources else {}),
            },
            ("clean", "rejected", "report", "quality"),
            {
                "max_rejected_fraction": d.max_rejected_fraction,
                "missing": {c: m.model_dump(mode="json") for c, m in d.missing.items()},
                "protected": d.protected,
                "drift": d.drift.model_dump(mode="json") if d.drift else None,
                "duplicates": d.duplicates,
            },
        ),
        StepDef(
            "split",
            _data_steps.split,
            {"clean": "validate.clean", "info": "ingest.info"},
            ("train", "test", "sample"),
            {
                "test_size": spec.split.test_size,
                "seed": spec.split.seed,
                "max_rows": spec.train.max_rows if spec.train else None,
            },
        ),
    ]
    train_ref, test_ref = "split.train", "split.test"
    kept_out = {"rejected": "validate.rejected", "quality": "validate.quality"}
    if d.label_errors is not None:
        steps.append(
            StepDef(
                "label_errors",
                _data_steps.label_errors,
                {"train": train_ref, "schema": "ingest.schema", "info": "ingest.info"},
                ("train", "issues", "dropped"),
                {**d.label_errors.model_dump(mode="json"), "seed": spec.split.seed},
            )
        )
        train_ref = "label_errors.train"
        kept_out |= {"label_issues": "label_errors.issues", "label_dropped": "label_errors.dropped"}
    if d.imputes:
        steps.append(
            StepDef(
                "impute",
                _data_steps.impute,
                {"train": train_ref, "test": test_ref},
                ("train", "test", "imputation"),
                {"missing": {c: m.model_dump(mode="json") for c, m in d.missing.items()}},
            )
        )
        train_ref, test_ref = "impute.train", "impute.test"
        kept_out["imputation"] = "impute.imputation"
    if spec.model is not None:  # an imported model stands where a trained one would
        steps.append(_import_def(spec.model, sources, runnable=True))
        model_ref, recorded = "import.model", dict(_IMPORTED)
        imported = {"imported": "import.imported"}
    else:
        assert spec.train is not None  # the spec gives train or model
        steps.append(
            StepDef(
                "train",
                _steps.train,
                {
                    "train": train_ref,
                    "schema": "ingest.schema",
                    "info": "ingest.info",
                    **train_threat,
                    # hardening's held-out cost: measured on the test rows, never trained on
                    **({"test": test_ref} if spec.train.harden else {}),
                },
                ("model", "search"),
                spec.train.model_dump(mode="json"),
            )
        )
        model_ref, recorded, imported = "train.model", {"search": "train.search"}, {}
    steps += [
        StepDef(
            "evaluate",
            _steps.evaluate,
            {
                "model": model_ref,
                "test": test_ref,
                "train": train_ref,
                "info": "ingest.info",
                **imported,
            },
            ("metrics",),
        ),
        StepDef(
            "audit",
            _steps.audit,
            {
                "model": model_ref,
                **imported,
                "train": train_ref,
                "test": test_ref,
                "info": "ingest.info",
                "schema": "ingest.schema",
                **check_threats,
            },
            ("findings",),
            {
                "checks": [{"check": c.check, **c.params} for c in spec.checks],
                "seed": spec.split.seed,
            },
        ),
        *_gate_and_register(
            spec,
            {
                "metrics": "evaluate.metrics",
                **recorded,
                "train": train_ref,
                "test": test_ref,
                "schema": "ingest.schema",
                **kept_out,
            },
            model=model_ref,
        ),
    ]
    return _ordered(steps), sources


def _ordered(steps: list[StepDef]) -> list[StepDef]:
    by_name = {s.name: s for s in steps}
    graph: dict[str, set[str]] = {}
    for step in steps:
        deps = set()
        for ref in step.inputs.values():
            producer, _, output = ref.partition(".")
            if producer == SOURCE:
                continue
            if producer not in by_name or output not in by_name[producer].outputs:
                raise SpecError(f"step {step.name} reads {ref}, which no step produces")
            deps.add(producer)
        graph[step.name] = deps
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise SpecError(f"the pipeline steps form a cycle: {exc.args[1]}") from exc
    return [by_name[name] for name in order]


def spec_document(spec: AnySpec) -> bytes:
    """The validated spec as YAML bytes, stored as the run's first artifact."""
    document = yaml.safe_dump(spec.model_dump(mode="json", by_alias=True), sort_keys=False)
    return str(document).encode()
