"""Pipeline: the spec, the DAG of steps, and the executors that run it."""

from mlwarden.pipeline._adversarial_training import CLEAN_METRICS, COST_TOLERANCE, HeldOutComparison
from mlwarden.pipeline._context import Output, StepContext
from mlwarden.pipeline._dag import StepDef, build_steps
from mlwarden.pipeline._estimators import build_estimator
from mlwarden.pipeline._executor import LocalExecutor, Progress, RunResult, StepRun, cache_key
from mlwarden.pipeline._import_spec import ImportSource, ImportSpec
from mlwarden.pipeline._kfp import compile_kfp
from mlwarden.pipeline._lm import canary_lines
from mlwarden.pipeline._lm_spec import LanguageModelSpec
from mlwarden.pipeline._quarantine import rows_kept_out
from mlwarden.pipeline._ray_executor import RayExecutor
from mlwarden.pipeline._report import build_report, write_run_report
from mlwarden.pipeline._spec import AnySpec, PipelineSpec, import_spec, load_spec, parse_spec

__all__ = [
    "AnySpec",
    "LanguageModelSpec",
    "LocalExecutor",
    "Output",
    "PipelineSpec",
    "Progress",
    "RayExecutor",
    "RunResult",
    "StepContext",
    "StepDef",
    "StepRun",
    "build_report",
    "build_steps",
    "cache_key",
    "compile_kfp",
    "load_spec",
    "parse_spec",
    "write_run_report",
]

__all__ += [
    "CLEAN_METRICS",
    "COST_TOLERANCE",
    "HeldOutComparison",
    "build_estimator",
    "canary_lines",
    "rows_kept_out",
]

__all__ += ["ImportSource", "ImportSpec", "import_spec"]
