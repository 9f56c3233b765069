"""``mlwarden step run`` and ``mlwarden compile``: a pipeline's steps run by an orchestrator."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mlwarden.cli._common import DEFAULT_STORE, DbOpt, StoreOpt, err, open_store, out
from mlwarden.cli._progress import RichProgress

step_app = typer.Typer(help="Run one step of a pipeline (for orchestrators).", no_args_is_help=True)


@step_app.command("run")
def step_run(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (YAML).")],
    step: Annotated[str, typer.Argument(help="The step to run; the steps before it must be done.")],
    store: StoreOpt = DEFAULT_STORE,
    db_url: DbOpt = None,
) -> int:
    """Run one step of a pipeline against the shared store, as a KFP component does."""
    from mlwarden.pipeline import LocalExecutor, load_spec

    lineage = open_store(store, db_url)
    loaded = load_spec(spec, memo=lineage.root / "cache" / "specs")
    result = LocalExecutor(lineage, RichProgress(out)).run(loaded, only=step)
    if result.status != "completed":
        err.print(f"[red]error:[/] {result.error}", soft_wrap=True)
        return result.exit_code or 1
    if result.model_version:
        out.print(f"[green]registered[/] [bold]{result.model_version}[/]")
    return 0


class Target(StrEnum):
    """Orchestrators a spec compiles to."""

    kfp = "kfp"


def compile_command(
    spec: Annotated[Path, typer.Argument(help="Pipeline spec (YAML).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Pipeline file to write.")],
    image: Annotated[
        str, typer.Option("--image", help="Container image holding mlwarden and the extras.")
    ],
    target: Annotated[Target, typer.Option("--target", help="The orchestrator.")] = Target.kfp,
    store: Annotated[
        str, typer.Option("--store", help="Artifact store path every component mounts.")
    ] = str(DEFAULT_STORE),
    db_url: DbOpt = None,
) -> int:
    """Compile a spec to a Kubeflow Pipelines (v2) pipeline: one component per step."""
    from mlwarden.errors import ParameterError
    from mlwarden.pipeline import compile_kfp

    try:
        import kfp  # noqa: F401
    except ImportError as exc:
        raise ParameterError("--target kfp needs kfp: pip install 'mlwarden[kfp]'") from exc
    steps = compile_kfp(spec, output, store=store, db_url=db_url, image=image)
    out.print(f"wrote {output}: {len(steps)} components ({', '.join(steps)})", soft_wrap=True)
    return 0
