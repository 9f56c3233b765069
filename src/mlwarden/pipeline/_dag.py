"""From a spec to the DAG of steps: each with its function, parameters, inputs and outputs."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from graphlib import CycleError, TopologicalSorter
from typing import Any

import yaml

from mlwarden import __version__
from mlwarden.data import TableSchema
from mlwarden.errors import DataError, SpecError
from mlwarden.pipeline import _steps
from mlwarden.pipeline._context import Output, StepContext
from mlwarden.pipeline._io import CSV, JSON, json_bytes
from mlwarden.pipeline._spec import PipelineSpec

StepFn = Callable[[StepContext], dict[str, Output]]
SOURCE = "source"


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

    @cached_property
    def code_version(self) -> str:
        """Hash of the step function's source and the package version: code changes rerun it."""
        source = inspect.getsource(self.fn)
        return hashlib.sha256(f"{__version__}\n{source}".encode()).hexdigest()


def build_steps(spec: PipelineSpec) -> tuple[list[StepDef], dict[str, Output]]:
    """The steps of ``spec`` in dependency order, and the outside files they read."""
    d = spec.data
    sources: dict[str, Output] = {}
    if d.path is not None:
        try:
            sources["table"] = Output(d.path.read_bytes(), CSV, d.path.name)
        except FileNotFoundError:
            raise DataError(f"data.path: file {d.path} does not exist") from None
        except OSError as exc:
            raise DataError(f"data.path: cannot read {d.path}: {exc}") from exc
    if d.schema_file is not None:
        schema = TableSchema.from_yaml(d.schema_file)
        sources["schema"] = Output(json_bytes(schema), JSON, d.schema_file.name)
    label, positive = d.label, d.positive
    model_spec = spec.train.model_dump(mode="json")
    steps = [
        StepDef(
            "ingest",
            _steps.ingest,
            {
                role: f"{SOURCE}.{name}"
                for role, name in (("source", "table"), ("schema", "schema"))
                if name in sources
            },
            ("raw", "schema", "info"),
            {
                "dataset": d.dataset,
                "path": str(d.path) if d.path else None,
                "label": label,
                "positive": positive,
                "has_schema": "schema" in sources,
            },
        ),
        StepDef(
            "validate",
            _steps.validate,
            {"raw": "ingest.raw", "schema": "ingest.schema"},
            ("clean", "rejected", "report"),
            {"max_rejected_fraction": d.max_rejected_fraction},
        ),
        StepDef(
            "split",
            _steps.split,
            {"clean": "validate.clean", "info": "ingest.info"},
            ("train", "test"),
            {"test_size": spec.split.test_size, "seed": spec.split.seed},
        ),
        StepDef(
            "train",
            _steps.train,
            {"train": "split.train", "schema": "ingest.schema", "info": "ingest.info"},
            ("model", "search"),
            model_spec,
        ),
        StepDef(
            "evaluate",
            _steps.evaluate,
            {"model": "train.model", "test": "split.test", "info": "ingest.info"},
            ("metrics",),
        ),
        StepDef(
            "audit",
            _steps.audit,
            {
                "model": "train.model",
                "train": "split.train",
                "test": "split.test",
                "info": "ingest.info",
            },
            ("findings",),
            {"checks": [{"check": c.check, **c.params} for c in spec.checks]},
        ),
        StepDef(
            "gate", _steps.gate, {"findings": "audit.findings"}, ("gate",), {"mode": spec.gate.mode}
        ),
        StepDef(
            "register",
            _steps.register,
            {
                "model": "train.model",
                "gate": "gate.gate",
                "metrics": "evaluate.metrics",
                "findings": "audit.findings",
                "search": "train.search",
                "train": "split.train",
                "test": "split.test",
                "schema": "ingest.schema",
                "rejected": "validate.rejected",
            },
            (),
            {"name": spec.registry.name},
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


def spec_document(spec: PipelineSpec) -> bytes:
    """The validated spec as YAML bytes, stored as the run's first artifact."""
    document = yaml.safe_dump(spec.model_dump(mode="json", by_alias=True), sort_keys=False)
    return str(document).encode()
