"""mlwarden: red-team, gate and guard machine-learning models.

The public API, importable from here; everything under a leading underscore is private.
Importing mlwarden writes nothing and loads no heavy library.
"""

from mlwarden._version import __version__
from mlwarden.audit import CHECKS, Finding, GateResult, apply_gate, register_check, run_check
from mlwarden.data import Dataset, TableSchema, infer_schema, validate_table
from mlwarden.datasets import list_datasets, load
from mlwarden.errors import MlwardenError
from mlwarden.lineage import LineageStore, verify_store
from mlwarden.models import ModelRegistry, SklearnAdapter
from mlwarden.pipeline import LocalExecutor, PipelineSpec, RunResult, load_spec, parse_spec

__all__ = [
    "CHECKS",
    "Dataset",
    "Finding",
    "GateResult",
    "LineageStore",
    "LocalExecutor",
    "MlwardenError",
    "ModelRegistry",
    "PipelineSpec",
    "RunResult",
    "SklearnAdapter",
    "TableSchema",
    "__version__",
    "apply_gate",
    "infer_schema",
    "list_datasets",
    "load",
    "load_spec",
    "parse_spec",
    "register_check",
    "run_check",
    "validate_table",
    "verify_store",
]
