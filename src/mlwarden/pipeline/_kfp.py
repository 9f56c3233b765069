"""Compile a pipeline spec to Kubeflow Pipelines (KFP v2): one component per step.

(No postponed annotations here: KFP reads the component function's types at run time.)

Each component runs ``mlwarden step run SPEC STEP`` against a lineage store and artifact store
that every component shares (a PostgreSQL URL for the records, a shared path for the
artifacts), in the order of the DAG. A step finds the steps before it done (cache hits on the
same content hashes), runs, and records itself, so the lineage of a KFP run is the lineage of
a local run, and a local rerun of the spec is all cache hits.
"""

from pathlib import Path
from typing import Any

from mlwarden.pipeline._dag import build_steps
from mlwarden.pipeline._spec import load_spec


def _component(image: str) -> Any:
    from kfp import dsl

    @dsl.component(base_image=image)  # type: ignore[untyped-decorator]
    def mlwarden_step(spec: str, step: str, store: str, db_url: str, after: str) -> str:
        """Run one mlwarden pipeline step against the shared stores; ``after`` orders it."""
        import shutil
        import subprocess
        import sys

        found = shutil.which("mlwarden")
        entry = "from mlwarden.cli import entrypoint; entrypoint()"
        command = [found] if found else [sys.executable, "-c", entry]
        command += ["step", "run", spec, step, "--store", store]
        if db_url:
            command += ["--db-url", db_url]
        subprocess.run(command, check=True)
        return step

    return mlwarden_step


def compile_kfp(
    spec_path: Path,
    output: Path,
    *,
    store: str,
    image: str,
    db_url: str | None = None,
) -> list[str]:
    """Write the KFP v2 pipeline YAML for ``spec_path`` to ``output``; the steps, in order.

    ``image`` must hold mlwarden with the extras the spec needs. ``spec_path``, the files it
    names and ``store`` must be at the same paths inside the components (a shared volume);
    ``db_url`` keeps the records in a database every component reaches (PostgreSQL).
    """
    from kfp import compiler, dsl

    spec = load_spec(spec_path)
    steps = [s.name for s in build_steps(spec)[0]]
    component = _component(image)
    spec_file = str(spec_path.resolve())

    @dsl.pipeline(name=f"mlwarden-{spec.name}", description=f"mlwarden pipeline {spec.name}")  # type: ignore[untyped-decorator]
    def pipeline() -> None:
        previous = ""
        for name in steps:
            task = component(
                spec=spec_file, step=name, store=store, db_url=db_url or "", after=previous
            )
            task.set_display_name(name).set_caching_options(False)
            previous = task.output

    compiler.Compiler().compile(pipeline, str(output))
    return steps
