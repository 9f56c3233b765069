"""A deployment: which registered versions serve, how outputs are hardened, what each guard does.

Read from YAML (``mlwarden serve --config deploy.yaml``) or built from ``mlwarden serve REF``'s
options. Every guard has an ``on_error`` setting: ``closed`` (the default) refuses the request
with 503 when the guard itself fails; ``open`` answers anyway, counts it and marks the
response with the ``X-Mlwarden-Fail-Open`` header.

A deployment is checked as a whole when it loads: a request may not hold more rows than the
rate limit's burst (such a request could never pass, so no client would ever be answered).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

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
    """Per API key token bucket: ``rate_per_s`` rows per second, bursts up to ``burst``.

    ``burst`` is also the most rows one request may hold (``guards.schema.max_rows`` defaults
    to it and may not exceed it).
    """

    rate_per_s: float = Field(default=100.0, gt=0)
    burst: int = Field(default=200, ge=1)


class CoverageSettings(_Strict):
    """The coverage detector (Kesarwani et al. 2018): off unless enabled, since a client sending
    more than ``benign_queries`` natural rows is, by design, one that has learnt too much."""

    enabled: bool = False
    n_regions: int = Field(default=256, ge=2)
    benign_queries: int = Field(default=500, ge=1)


class ExtractionGuard(_Strict):
    """Per-client extraction detection and what an alarm does to that client.

    ``throttle`` cuts the client to ``throttle_rate_per_s`` rows per second, one row per
    request; ``block`` refuses it with 403 until the server restarts or an admin unblocks it
    (with a shared ``state``, until an admin unblocks it).
    Each request's rows are screened in order before any is answered: a request during which
    the alarm rises is refused whole (403 for ``block``, 429 for ``throttle``), so a batch
    that gives a thief away is never answered.
    """

    enabled: bool = True
    action: Literal["log", "throttle", "block"] = "block"
    throttle_rate_per_s: float = Field(default=1.0, gt=0)
    on_error: OnError = "closed"
    coverage: CoverageSettings = Field(default_factory=CoverageSettings)


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


class ExplainGuard(_Strict):
    """``/v1/explain``: SHAP values for keys with the ``explain`` role, within their own budget.

    An explanation of a row reveals about one number per input column plus the base value,
    as much as ``d + 1`` predictions (a linear model's SHAP values are ``w_i * (x_i - mean_i)``:
    Milli et al. 2019 rebuild a model from a few), so each explained row spends ``d + 1`` rows
    of the key's rate limit, goes through the extraction guard like a prediction, and counts
    toward the key's ``max_explanations`` per ``window_s``; going past it raises an extraction
    alarm (the extraction guard's action: block, throttle, or log and answer 429).
    """

    enabled: bool = True
    max_explanations: int = Field(default=20, ge=1)
    window_s: float = Field(default=3600.0, gt=0)


class SchemaGuard(_Strict):
    """Request rows are validated against the training schema (422 naming the field).

    ``max_rows``: most rows per request (default: the rate limit's ``burst``).
    ``max_body_bytes``: largest request body read (413 beyond, before parsing); default
    ``max_rows`` rows of ``bytes_per_column`` bytes per feature column, plus 4 KiB.
    """

    max_rows: int | None = Field(default=None, ge=1)
    max_body_bytes: int | None = Field(default=None, ge=1024)
    bytes_per_column: int = Field(default=256, ge=16)

    def body_limit(self, rows: int, columns: int) -> int:
        """The body cap for requests of at most ``rows`` rows of ``columns`` features."""
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        return rows * max(columns, 1) * self.bytes_per_column + 4096


class DecisionLogGuard(_Strict):
    """The decision log's backlog and what the server does when the log cannot keep up.

    The log is *stalled* when its oldest unwritten record waited more than ``max_delay_s``
    (a locked or failing database) or ``max_backlog`` records wait. ``closed`` then answers
    503 with ``Retry-After`` at once; ``open`` answers, marks the response with
    ``X-Mlwarden-Fail-Open: decisions`` and keeps the record while the backlog has room
    (counted in ``mlwarden_decision_log_dropped`` when it has none).
    """

    max_backlog: int = Field(default=10_000, ge=1)
    max_delay_s: float = Field(default=2.0, gt=0, le=3600)
    on_error: OnError = "closed"


class ModelPolicy(_Strict):
    """When the model itself errors: refuse (``closed``), or answer ``fallback_label``."""

    on_error: OnError = "closed"
    fallback_label: str | int | None = None

    @model_validator(mode="after")
    def _fallback_for_open(self) -> ModelPolicy:
        if self.on_error == "open" and self.fallback_label is None:
            raise SpecError("on_error: open needs a fallback_label to answer with")
        return self


class EfficacyPolicy(_Strict):
    """Efficacy from feedback: precision, recall, F1 and calibration error of each served
    version over its last ``window`` labelled rows (``mlwarden_efficacy_*`` gauges).

    ``positive``: the class measured (default: the model's last class, scikit-learn's
    positive class for binary labels). Fewer than ``min_labelled`` rows are inconclusive.
    """

    window: int = Field(default=500, ge=10, le=1_000_000)
    min_labelled: int = Field(default=30, ge=1)
    bins: int = Field(default=10, ge=1, le=100)
    positive: str | int | None = None


class SharedState(_Strict):
    """Guard state shared by replicas: rate limits, detector windows, blocks and revocations
    kept in Redis at ``url`` (``redis://host:port/db``), so a client spreading its queries over
    replicas spends one budget. A Redis failure refuses requests (``closed``, 503) or serves
    them on each replica's own state (``open``). Given as a bare URL, or ``{url, on_error}``."""

    url: str
    on_error: OnError = "closed"

    @field_validator("url")
    @classmethod
    def _redis_url(cls, url: str) -> str:
        if not url.startswith(("redis://", "rediss://", "unix://")) or any(
            c.isspace() for c in url
        ):
            raise SpecError(
                f"expected a Redis URL such as redis://host:6379/0 (or rediss://, unix://), "
                f"got {url!r}"
            )
        return url


class Guards(_Strict):
    """Every guard's settings."""

    schema_: SchemaGuard = Field(default_factory=SchemaGuard, alias="schema")
    extraction: ExtractionGuard = Field(default_factory=ExtractionGuard)
    drift: DriftGuard = Field(default_factory=DriftGuard)
    slowdown: SlowdownGuard = Field(default_factory=SlowdownGuard)
    model: ModelPolicy = Field(default_factory=ModelPolicy)
    decisions: DecisionLogGuard = Field(default_factory=DecisionLogGuard)
    explain: ExplainGuard = Field(default_factory=ExplainGuard)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Deployment(_Strict):
    """One served endpoint: routes (one, or two for an A/B split), an optional shadow, outputs,
    rate limits and guards. ``docs: false`` serves neither ``/docs`` nor ``/openapi.json``.
    ``state``: where replicas share guard state (:class:`SharedState`; default this process)."""

    name: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]+$")
    routes: list[Route] = Field(min_length=1, max_length=2)
    shadow: str | None = None
    output: OutputPolicy = Field(default_factory=OutputPolicy)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    guards: Guards = Field(default_factory=Guards)
    efficacy: EfficacyPolicy = Field(default_factory=EfficacyPolicy)
    docs: bool = True
    state: SharedState | None = None

    @field_validator("state", mode="before")
    @classmethod
    def _url_alone(cls, value: object) -> object:
        return {"url": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _rows_fit_the_burst(self) -> Deployment:
        rows, burst = self.guards.schema_.max_rows, self.rate_limit.burst
        if rows is not None and rows > burst:
            raise SpecError(
                f"guards.schema.max_rows is {rows} but rate_limit.burst is {burst}: a request "
                f"of more than {burst} rows could never pass the rate limit; set max_rows <= "
                "burst (or leave it out: it defaults to the burst)"
            )
        return self

    @property
    def max_rows(self) -> int:
        """Most rows one request may hold: ``guards.schema.max_rows``, else the burst."""
        rows = self.guards.schema_.max_rows
        return rows if rows is not None else self.rate_limit.burst

    @classmethod
    def single(cls, model: str, **updates: object) -> Deployment:
        """A deployment of one version with default guards; bad settings raise ``SpecError``."""
        try:
            return cls.model_validate({"routes": [{"model": model}], **updates})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'deployment'}: "
                + str(e["msg"]).removeprefix("Value error, ")
                for e in exc.errors()
            )
            raise SpecError(f"bad deployment settings: {problems}") from None

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
