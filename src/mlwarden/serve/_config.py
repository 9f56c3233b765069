"""A deployment: which registered versions serve, how outputs are hardened, what each guard does.

Read from YAML (``mlwarden serve --config deploy.yaml``) or built from ``mlwarden serve REF``'s
options. Every guard has an ``on_error`` setting: ``closed`` (the default) refuses the request
with 503 when the guard itself fails; ``open`` answers anyway, counts it and marks the
response with the ``X-Mlwarden-Fail-Open`` header.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlwarden._yaml_lines import parse_mapping, validation_error
from mlwarden.errors import SpecError

OnError = Literal["closed", "open"]
OutputModeName = Literal["probabilities", "rounded", "top1", "label"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Route(_Strict):
    """A registered model version (``name@N`` or ``name@latest``) and its share of traffic."""

    model: str
    weight: float = Field(default=1.0, gt=0)


class OutputPolicy(_Strict):
    """What the API returns per row (Tramèr et al. 2016 §8 countermeasures): every class
    probability, probabilities rounded to ``decimals``, the top label with its confidence, or
    the label alone."""

    mode: OutputModeName = "probabilities"
    decimals: int = Field(default=2, ge=0, le=15)


class RateLimit(_Strict):
    """Per API key token bucket: ``rate_per_s`` rows per second, bursts up to ``burst``."""

    rate_per_s: float = Field(default=100.0, gt=0)
    burst: int = Field(default=200, ge=1)


class ExtractionGuard(_Strict):
    """Per-client extraction detection and what an alarm does to that client.

    ``throttle`` cuts the client to ``throttle_rate_per_s``; ``block`` refuses it with 403
    until the server restarts or an admin unblocks it.
    """

    enabled: bool = True
    action: Literal["log", "throttle", "block"] = "block"
    throttle_rate_per_s: float = Field(default=1.0, gt=0)
    on_error: OnError = "closed"


class DriftGuard(_Strict):
    """Windowed input and prediction-mix drift against the training reference."""

    enabled: bool = True
    window: int = Field(default=500, ge=50)
    every: int = Field(default=250, ge=1)
    on_error: OnError = "open"


class SlowdownGuard(_Strict):
    """Early-exit models: per-client exit monitoring and compute caps (DeepSloth defence).

    A client whose answers stop exiting early raises an alarm; for ``alarm_hold_s`` after it,
    and while it spends more than ``compute_per_s`` full passes per second, its answers come
    from exit ``max_exit_when_alarmed`` at the latest (the most confident exit so far; the
    response says so in ``X-Mlwarden-Compute-Capped``).
    """

    enabled: bool = True
    max_exit_when_alarmed: int = Field(default=0, ge=0)
    compute_per_s: float | None = Field(default=None, gt=0)
    alarm_hold_s: float = Field(default=300.0, ge=0)
    on_error: OnError = "closed"


class SchemaGuard(_Strict):
    """Request rows are validated against the training schema (422 naming the field)."""

    max_rows: int = Field(default=1000, ge=1)


class ModelPolicy(_Strict):
    """When the model itself errors: refuse (``closed``), or answer ``fallback_label``."""

    on_error: OnError = "closed"
    fallback_label: str | int | None = None

    @model_validator(mode="after")
    def _fallback_for_open(self) -> ModelPolicy:
        if self.on_error == "open" and self.fallback_label is None:
            raise ValueError("on_error: open needs a fallback_label to answer with")
        return self


class Guards(_Strict):
    """Every guard's settings."""

    schema_: SchemaGuard = Field(default_factory=SchemaGuard, alias="schema")
    extraction: ExtractionGuard = Field(default_factory=ExtractionGuard)
    drift: DriftGuard = Field(default_factory=DriftGuard)
    slowdown: SlowdownGuard = Field(default_factory=SlowdownGuard)
    model: ModelPolicy = Field(default_factory=ModelPolicy)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Deployment(_Strict):
    """One served endpoint: routes (one, or two for an A/B split), an optional shadow, outputs,
    rate limits and guards."""

    name: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]+$")
    routes: list[Route] = Field(min_length=1, max_length=2)
    shadow: str | None = None
    output: OutputPolicy = Field(default_factory=OutputPolicy)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    guards: Guards = Field(default_factory=Guards)

    @classmethod
    def single(cls, model: str, **updates: object) -> Deployment:
        """A deployment of one version with default guards."""
        return cls.model_validate({"routes": [{"model": model}], **updates})

    @classmethod
    def from_yaml(cls, path: Path) -> Deployment:
        """Read a deployment file; a problem raises ``SpecError`` naming field and line."""
        try:
            text = path.read_text()
        except OSError as exc:
            raise SpecError(f"cannot read deployment {path}: {exc}") from exc
        raw, lines = parse_mapping(text, str(path), "of deployment settings (routes, ...)")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise validation_error(exc, lines, str(path)) from None
