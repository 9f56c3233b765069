"""The pipeline spec: a YAML file validated by pydantic, with errors that point at the line."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlwarden._yaml_lines import line_of, parse_mapping, validation_error
from mlwarden.audit import CHECKS
from mlwarden.data import DriftThresholds, MissingPolicy, TableSchema, list_datasets
from mlwarden.errors import SpecError
from mlwarden.lineage import sha256_json
from mlwarden.models import ScanPolicy
from mlwarden.pipeline._early_exit_spec import EarlyExitSpec, parse_early_exit_spec
from mlwarden.pipeline._estimators import EstimatorName, estimator_parameters
from mlwarden.pipeline._import_spec import ImportSource, ImportSpec
from mlwarden.pipeline._lm_spec import LanguageModelSpec, parse_lm_spec
from mlwarden.pipeline._spec_base import GateSpec, RegisterSpec

ParamValue = int | float | str | bool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelErrorSpec(_Strict):
    """Look for mislabeled training rows (confident learning) and what to do with them."""

    action: Literal["report", "drop", "fail"] = "report"
    max_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    method: Literal["prune_by_noise_rate", "confident_joint"] = "prune_by_noise_rate"
    estimator: EstimatorName = "hist_gradient_boosting"
    cv: int = Field(default=3, ge=2, le=20)


class DriftSpec(_Strict):
    """Compare the ingested table with a reference table, column by column."""

    reference: str
    thresholds: DriftThresholds = DriftThresholds()
    action: Literal["report", "fail"] = "fail"


class DataSpec(_Strict):
    """Where the table comes from, its label, schema and the data policy."""

    dataset: str | None = None
    path: Path | None = None
    label: str | None = None
    positive: str | int | None = None
    # The label's classes; any other label value is quarantined. Unset: every value that is
    # ``positive`` or frequent enough (see ``mlwarden.data.decide_classes``) is a class.
    classes: list[str | int] | None = Field(default=None, min_length=2)
    # The CSV separator; unset, it is detected from the first lines.
    sep: Literal[",", ";", "\t", "|"] | None = None
    # Rows that repeat an earlier accepted row: counted in quality.json, or also dropped.
    duplicates: Literal["report", "drop"] = "report"
    schema_file: Path | TableSchema | None = Field(default=None, alias="schema")
    max_rejected_fraction: float = Field(default=0.0, ge=0.0, le=1.0)
    missing: dict[str, MissingPolicy] = {}
    protected: list[str] = []
    label_errors: LabelErrorSpec | None = None
    drift: DriftSpec | None = None
    # Rows analysts labelled in production (``mlwarden retrain --from-feedback`` writes them):
    # appended to the source table, then validated like every other row.
    feedback: Path | None = None

    @field_validator("dataset")
    @classmethod
    def _bundled(cls, name: str | None) -> str | None:
        if name is not None and name not in list_datasets():
            raise SpecError(f"a bundled dataset, one of {', '.join(list_datasets())}")
        return name

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.dataset is None) == (self.path is None):
            raise SpecError("give exactly one of 'dataset' (a bundled name) or 'path' (a CSV)")
        if self.path is not None and self.label is None:
            raise SpecError("a 'path' source needs 'label': the name of the label column")
        if self.classes is not None:
            keys = [str(c) for c in self.classes]
            if len(set(keys)) != len(keys):
                raise SpecError(f"'classes' lists a class twice: {self.classes}")
            if self.positive is not None and str(self.positive) not in keys:
                raise SpecError(
                    f"'positive' {self.positive!r} is not one of 'classes' {self.classes}"
                )
        return self

    @property
    def imputes(self) -> bool:
        """Whether any column's missing values are imputed (fitted on training rows)."""
        return any(p.action == "impute" for p in self.missing.values())


class SplitSpec(_Strict):
    """Held-out split: stratified on the label, reproducible by seed."""

    test_size: float = Field(default=0.25, gt=0.0, lt=1.0)
    seed: int = 0


class HardenSpec(_Strict):
    """Adversarial training: refit with the evasions the tabular attack finds on training rows."""

    threat_model: str
    cost_budget: float = Field(gt=0)
    rounds: int = Field(default=2, ge=1, le=10)
    rows: int = Field(default=300, ge=10)


class TrainSpec(_Strict):
    """Estimator, fixed parameters and the grid searched with cross-validation."""

    estimator: EstimatorName
    params: dict[str, ParamValue] = {}
    grid: dict[str, list[ParamValue]] = {}
    cv: int = Field(default=3, ge=2, le=20)
    scoring: Literal["roc_auc", "roc_auc_ovr", "f1", "f1_macro", "accuracy"] = "roc_auc"
    n_jobs: int = Field(default=2, ge=1)
    seed: int = 0
    harden: HardenSpec | None = None
    #: Train on at most this many rows: a stratified sample of the training split, recorded
    #: in the split's ``sample.json``; None trains on all of them.
    max_rows: int | None = Field(default=None, ge=10)

    @field_validator("grid")
    @classmethod
    def _non_empty_lists(cls, grid: dict[str, list[ParamValue]]) -> dict[str, list[ParamValue]]:
        for name, values in grid.items():
            if not values:
                raise SpecError(f"grid entry {name!r} is an empty list; give at least one value")
        return grid


class CheckSpec(BaseModel):
    """One check of the policy: its registry key and its parameters (thresholds)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    check: str

    @model_validator(mode="after")
    def _known_check(self) -> CheckSpec:
        if self.check not in CHECKS:
            raise SpecError(
                f"unknown check {self.check!r}; known checks: {', '.join(sorted(CHECKS))}"
            )
        try:
            CHECKS[self.check].params.model_validate(self.params)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "parameters"
            given = "nothing" if err["type"] == "missing" else repr(err.get("input"))
            raise SpecError(
                f"check {self.check!r} parameter {where!r}: {err['msg']} (got {given})"
            ) from None
        return self

    @property
    def params(self) -> dict[str, Any]:
        """The check's parameters: every key but ``check``."""
        return dict(self.model_extra or {})


class PipelineSpec(_Strict):
    """A whole pipeline: data, split, training, policy (checks), gate and registration.

    ``model: {import: path}`` replaces ``train``: the pipeline scans and imports that file
    instead of fitting a model, then evaluates, audits, gates and registers it as usual.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    data: DataSpec
    split: SplitSpec = SplitSpec()
    train: TrainSpec | None = None
    model: ImportSource | None = None
    checks: list[CheckSpec] = Field(min_length=1)
    gate: GateSpec = GateSpec()
    registry: RegisterSpec = Field(alias="register")

    @model_validator(mode="after")
    def _train_or_import(self) -> PipelineSpec:
        if (self.train is None) == (self.model is None):
            raise SpecError(
                "give exactly one of 'train' (fit a model) or 'model: {import: path}' "
                "(bring a model file)"
            )
        return self

    def digest(self) -> str:
        """sha256 of the validated spec, independent of YAML formatting and comments."""
        return sha256_json(self.model_dump(mode="json", by_alias=True))


#: A pipeline spec of any task: tabular classification, a language model, an early-exit network,
#: or the import of a model file alone.
AnySpec: TypeAlias = PipelineSpec | LanguageModelSpec | EarlyExitSpec | ImportSpec


def is_threat_model_path(value: str) -> bool:
    """Whether a ``threat_model`` value is a path to a YAML file (else: a bundled name)."""
    return Path(value).suffix in (".yaml", ".yml")


def threat_model_fields(spec: PipelineSpec) -> dict[tuple[str | int, ...], str]:
    """Every ``threat_model`` the spec names, by field: ``train.harden`` and check parameters."""
    found: dict[tuple[str | int, ...], str] = {}
    if spec.train is not None and spec.train.harden is not None:
        found[("train", "harden", "threat_model")] = spec.train.harden.threat_model
    for i, check in enumerate(spec.checks):
        value = check.params.get("threat_model")
        if isinstance(value, str):
            found[("checks", i, "threat_model")] = value
    return found


def _resolve_threat_models(
    spec: PipelineSpec, base: Path, lines: dict[tuple[Any, ...], int], source: str
) -> PipelineSpec:
    """Threat-model paths made absolute against ``base``; a missing file is a ``SpecError``."""
    resolved: dict[tuple[str | int, ...], str] = {}
    for loc, value in threat_model_fields(spec).items():
        if not is_threat_model_path(value):
            continue
        path = (base / value).resolve()
        if not path.is_file():
            field = ".".join(str(p) for p in loc)
            raise SpecError(
                f"{source}:{line_of(lines, loc)}: {field}: file {path} does not exist (given "
                f"{value!r}, relative to {base}); expected: a threat-model YAML file or the "
                "name of a bundled threat model"
            )
        resolved[loc] = str(path)
    if not resolved:
        return spec
    train, checks = spec.train, list(spec.checks)
    for loc, absolute in resolved.items():
        if loc[0] == "train" and train is not None and train.harden is not None:
            harden = train.harden.model_copy(update={"threat_model": absolute})
            train = train.model_copy(update={"harden": harden})
        elif isinstance(loc[1], int):
            check = checks[loc[1]]
            checks[loc[1]] = CheckSpec.model_validate(
                {"check": check.check, **check.params, "threat_model": absolute}
            )
    return spec.model_copy(update={"train": train, "checks": checks})


def _resolve_paths(
    spec: PipelineSpec, base: Path, lines: dict[tuple[Any, ...], int], source: str
) -> PipelineSpec:
    """Relative paths the spec names made absolute against ``base``, the spec file's folder."""
    spec = _resolve_threat_models(spec, base, lines, source)
    data = spec.data
    updates: dict[str, Any] = {}
    if data.path is not None and not data.path.is_absolute():
        updates["path"] = (base / data.path).resolve()
    if isinstance(data.schema_file, Path) and not data.schema_file.is_absolute():
        updates["schema_file"] = (base / data.schema_file).resolve()
    if data.feedback is not None and not data.feedback.is_absolute():
        updates["feedback"] = (base / data.feedback).resolve()
    if data.drift is not None and data.drift.reference not in list_datasets():
        reference = Path(data.drift.reference)
        if not reference.is_absolute():
            updates["drift"] = data.drift.model_copy(
                update={"reference": str((base / reference).resolve())}
            )
    if spec.model is not None and not spec.model.path.is_absolute():
        model = spec.model.model_copy(update={"path": (base / spec.model.path).resolve()})
        spec = spec.model_copy(update={"model": model})
    if not updates:
        return spec
    return spec.model_copy(update={"data": data.model_copy(update=updates)})


def parse_spec(
    text: str, source: str = "<spec>", base: Path | None = None, memo: Path | None = None
) -> AnySpec:
    """Validate spec text; a problem raises ``SpecError`` naming field, line, given, expected.

    ``task: language_model`` or ``task: early_exit`` selects that pipeline; no task, the
    tabular one.
    """
    raw, lines = parse_mapping(text, source, "of sections (name, data, train, ...)")
    task = raw.get("task")
    if task == "early_exit":
        return parse_early_exit_spec(raw, lines, source, base or Path.cwd())
    if "task" in raw:
        if task is not None and task != "language_model":
            raise SpecError(
                f"{source}: task: got {task!r}; expected 'language_model', 'early_exit' or no task"
            )
        return parse_lm_spec(raw, lines, source, base or Path.cwd())
    try:
        spec = PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, lines, source) from None
    _check_estimator_parameters(spec, lines, source, memo)
    return _resolve_paths(spec, base or Path.cwd(), lines, source)


def _check_estimator_parameters(
    spec: PipelineSpec, lines: dict[tuple[Any, ...], int], source: str, memo: Path | None
) -> None:
    """Refuse parameter names the estimator does not take, pointing at their line.

    Knowing the names means importing scikit-learn (seconds), so a spec that passed once is
    remembered in ``memo`` under its digest and the installed scikit-learn version.
    """
    train = spec.train
    if train is None:  # an imported model: no estimator to check
        return
    marker = None
    if memo is not None:
        key = sha256_json([spec.digest(), version("scikit-learn")])
        marker = memo / key
        if marker.exists():
            return
    known = estimator_parameters(train.estimator)
    for section in ("params", "grid"):
        for name in getattr(train, section):
            if name not in known:
                line = line_of(lines, ("train", section, name))
                raise SpecError(
                    f"{source}:{line}: train.{section}.{name}: got {name!r}; expected: a "
                    f"parameter of {train.estimator}, one of {', '.join(sorted(known))}"
                )
    if marker is not None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


def load_spec(path: Path | str, memo: Path | None = None) -> AnySpec:
    """Read and validate a spec file; relative data paths resolve against the file's folder.

    ``memo`` is a folder where specs that passed the estimator-parameter check are remembered.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"pipeline spec {path} does not exist") from None
    except OSError as exc:
        raise SpecError(f"cannot read pipeline spec {path}: {exc}") from exc
    return parse_spec(text, source=str(path), base=path.parent, memo=memo)


def import_spec(
    file: Path,
    name: str,
    *,
    data: str | None = None,
    label: str | None = None,
    checks: list[dict[str, Any]] | None = None,
    scan_policy: ScanPolicy | None = None,
) -> PipelineSpec | ImportSpec:
    """The spec ``mlwarden import`` runs: the tabular pipeline with ``model: {import: file}``
    when ``data`` (a bundled dataset or a CSV) is given, else the import alone."""
    source = {"import": str(file.resolve()), "scan_policy": scan_policy or ScanPolicy()}
    raw: dict[str, Any] = {"name": f"import-{name}", "model": source, "register": {"name": name}}
    if data is not None:
        table = (
            {"dataset": data} if data in list_datasets() else {"path": str(Path(data).resolve())}
        )
        raw |= {"data": {**table, "label": label}, "checks": checks or []}
    try:
        return (PipelineSpec if data is not None else ImportSpec).model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, {}, "mlwarden import") from None
