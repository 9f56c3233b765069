"""``mlwarden threat-model init``: a starter threat model for the user's own table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mlwarden.errors import DataError

threat_app = typer.Typer(help="Write threat models for the evasion check.", no_args_is_help=True)
out = Console(highlight=False)


@threat_app.command("init")
def threat_model_init(
    data: Annotated[str, typer.Argument(help="A CSV or Parquet file, or a bundled dataset name.")],
    label: Annotated[str, typer.Option("--label", help="The label column (not a feature).")],
    target: Annotated[
        str | None,
        typer.Option("--target", help="The class the attacker wants (default: the most frequent)."),
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the YAML here instead of stdout.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing --out file.")
    ] = False,
) -> int:
    """Draft a threat model listing every feature of DATA, with values and ranges from the data.

    Every feature starts controllable at cost 1 per change; edit the costs and delete the
    features the attacker cannot change, then name the file in the evasion check's policy.
    """
    from mlwarden.attacks import ThreatModel, draft_threat_model_yaml
    from mlwarden.cli._audit import _table

    if out_file is not None and out_file.exists() and not force:
        raise typer.BadParameter(
            f"{out_file} exists; give --force to overwrite it", param_hint="--out"
        )
    frame = _table(data)
    text = draft_threat_model_yaml(
        frame, label, target=target, source=data, path=None if out_file is None else str(out_file)
    )
    if out_file is None:
        print(text, end="")
        return 0
    try:
        out_file.write_text(text)
    except OSError as exc:
        raise DataError(f"--out: cannot write {out_file}: {exc}") from exc
    n = len(ThreatModel.from_yaml_text(text).features)
    out.print(
        f"wrote {out_file}: {n} features at cost 1 per change. Set real costs and delete the "
        "features the attacker cannot change, then gate on it with "
        f"{{check: evasion, threat_model: {out_file}, cost_budget: ..., max_success: ...}}",
        soft_wrap=True,
    )
    return 0
