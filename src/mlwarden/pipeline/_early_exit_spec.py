"""The spec of a ``task: early_exit`` pipeline (its steps are in ``_early_exit``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlwarden._yaml_lines import validation_error
from mlwarden.audit import SlowdownCheck
from mlwarden.errors import SpecError
from mlwarden.lineage import sha256_json
from mlwarden.pipeline._spec_base import GateSpec, RegisterSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SDNTrainSpec(_Strict):
    """The network and its training (``adversarial_eps``: DeepSloth adversarial training)."""

    width: int = Field(default=16, ge=2)
    epochs: int = Field(default=30, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    adversarial_eps: float | None = Field(default=None, gt=0)
    adversarial_steps: int = Field(default=3, ge=1)
    seed: int = 0


class ExitSpec(_Strict):
    """The serving threshold q: fixed, or the lowest within ``max_drop`` of the final accuracy."""

    threshold: float | None = Field(default=None, gt=0, le=1)
    calibrate_max_drop: float | None = Field(default=None, gt=0, lt=1)

    @model_validator(mode="after")
    def _one(self) -> ExitSpec:
        if (self.threshold is None) == (self.calibrate_max_drop is None):
            raise SpecError("give exactly one of threshold or calibrate_max_drop")
        return self


class SlowdownCheckSpec(SlowdownCheck):
    """A ``slowdown`` entry of the policy."""

    check: Literal["slowdown"]


class EarlyExitSpec(_Strict):
    """A ``task: early_exit`` pipeline spec (the bundled Digits images)."""

    task: Literal["early_exit"]
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    dataset: Literal["digits"] = "digits"
    test_size: float = Field(default=0.3, gt=0, lt=1)
    train: SDNTrainSpec = SDNTrainSpec()
    exit: ExitSpec = ExitSpec(threshold=0.9)
    checks: list[SlowdownCheckSpec] = Field(min_length=1)
    gate: GateSpec = GateSpec()
    registry: RegisterSpec = Field(alias="register")

    def digest(self) -> str:
        """sha256 of the validated spec, independent of YAML formatting and comments."""
        return sha256_json(self.model_dump(mode="json", by_alias=True))


def parse_early_exit_spec(
    raw: dict[str, Any], lines: dict[tuple[Any, ...], int], source: str, base: Path
) -> EarlyExitSpec:
    """Validate an early-exit spec (``base`` is unused: it reads no files)."""
    try:
        return EarlyExitSpec.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, lines, source) from None
