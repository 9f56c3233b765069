"""The spec of a ``task: language_model`` pipeline (its steps are in ``_lm``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlwarden._yaml_lines import validation_error
from mlwarden.audit import CanaryCheck
from mlwarden.data import list_corpora
from mlwarden.errors import SpecError
from mlwarden.lineage import sha256_json
from mlwarden.pipeline._spec_base import GateSpec, RegisterSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CorpusSpec(_Strict):
    """The training text: a bundled corpus (``pydoc``: Python's docstrings) or a file path."""

    source: str = "pydoc"
    max_chars: int | None = Field(default=None, ge=1000)


class PlantSpec(_Strict):
    """Canary lines to plant in the text, each ``repeats`` times at random line boundaries."""

    path: Path | None = None
    lines: list[str] = []
    repeats: int = Field(default=10, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _some_lines(self) -> PlantSpec:
        if self.path is None and not self.lines:
            raise SpecError("give the canaries as 'path' (one per line) or 'lines'")
        return self


class LMTrainSpec(_Strict):
    """Architecture and optimisation of the character-level model."""

    steps: int = Field(default=1500, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    embed: int = Field(default=32, ge=1)
    hidden: int = Field(default=128, ge=1)
    layers: int = Field(default=1, ge=1, le=4)
    seq_len: int = Field(default=96, ge=8)
    seed: int = 0


class CanaryCheckSpec(CanaryCheck):
    """A ``canary`` entry of the policy."""

    check: Literal["canary"]


class LanguageModelSpec(_Strict):
    """A ``task: language_model`` pipeline spec."""

    task: Literal["language_model"]
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    corpus: CorpusSpec = CorpusSpec()
    canaries: PlantSpec
    train: LMTrainSpec = LMTrainSpec()
    checks: list[CanaryCheckSpec] = Field(min_length=1)
    gate: GateSpec = GateSpec()
    registry: RegisterSpec = Field(alias="register")

    def digest(self) -> str:
        """sha256 of the validated spec, independent of YAML formatting and comments."""
        return sha256_json(self.model_dump(mode="json", by_alias=True))


def parse_lm_spec(
    raw: dict[str, Any], lines: dict[tuple[Any, ...], int], source: str, base: Path
) -> LanguageModelSpec:
    """Validate a language-model spec; relative paths resolve against ``base``."""
    try:
        spec = LanguageModelSpec.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, lines, source) from None
    updates: dict[str, Any] = {}
    if spec.corpus.source not in list_corpora() and not Path(spec.corpus.source).is_absolute():
        updates["corpus"] = spec.corpus.model_copy(
            update={"source": str((base / spec.corpus.source).resolve())}
        )
    if spec.canaries.path is not None and not spec.canaries.path.is_absolute():
        updates["canaries"] = spec.canaries.model_copy(
            update={"path": (base / spec.canaries.path).resolve()}
        )
    return spec.model_copy(update=updates)
