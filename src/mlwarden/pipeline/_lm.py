"""The language-model pipeline: plant canaries, train a character model, measure exposure, gate.

A spec with ``task: language_model`` runs these steps through the same executor (cache,
resume, lineage) as a tabular pipeline:

``corpus`` (the text with the canary lines planted ``repeats`` times) -> ``train`` (a
character-level GRU, saved as safetensors) -> ``audit`` (the canary check: exposure of the
planted lines beside never-planted controls) -> ``gate`` -> ``register``.

Planting canaries is the Secret Sharer's test of the *training procedure* (Carlini et al.
2019): if a secret written a few times into the text comes back as the model's top guess, any
real secret in the corpus can too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlwarden._yaml_lines import validation_error
from mlwarden.audit import CanaryCheck
from mlwarden.data import list_corpora, load_text
from mlwarden.errors import DataError, SpecError
from mlwarden.lineage import sha256_json
from mlwarden.models import LANGUAGE_MODEL_MEDIA_TYPE
from mlwarden.pipeline._context import Output, StepContext
from mlwarden.pipeline._io import JSON, json_bytes
from mlwarden.pipeline._spec import GateSpec, RegisterSpec

TEXT = "text/plain; charset=utf-8"


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


def lm_sources(spec: LanguageModelSpec) -> dict[str, Output]:
    """The outside files a language-model run reads: the corpus and the canary list."""
    source = spec.corpus.source
    if source in list_corpora():
        corpus = Output(load_text(source).encode(), TEXT, f"{source}.txt")
    else:
        corpus = Output(_read(Path(source), "corpus.source"), TEXT, Path(source).name)
    plant = spec.canaries
    listed = _read(plant.path, "canaries.path").decode() if plant.path else ""
    text = "\n".join([*listed.splitlines(), *plant.lines])
    return {"corpus": corpus, "canaries": Output(text.encode(), TEXT, "canaries.txt")}


def _read(path: Path, field: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{field}: file {path} does not exist") from None
    except OSError as exc:
        raise DataError(f"{field}: cannot read {path}: {exc}") from exc


def canary_lines(text: str) -> list[str]:
    """Canary lines of a canaries file: one per line, blank lines and ``#`` comments skipped."""
    found = [ln.strip() for ln in text.splitlines()]
    return [ln for ln in found if ln and not ln.startswith("#")]


# --------------------------------------------------------------------------------------------
# Steps


def plant(ctx: StepContext) -> dict[str, Output]:
    """The training text: the corpus (cut to ``max_chars``) with every canary planted."""
    from mlwarden.attacks import insert_canaries

    p = ctx.params
    try:
        text = ctx.input("corpus").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"the corpus is not UTF-8 text: {exc}") from exc
    if p["max_chars"] is not None:
        text = text[: p["max_chars"]]
    lines = canary_lines(ctx.input("canaries").decode("utf-8"))
    if not lines:
        raise DataError("the canaries file lists no canary lines")
    planted = insert_canaries(text, lines, p["repeats"], seed=p["seed"])
    ctx.progress(f"{len(lines)} canaries x {p['repeats']} planted in {len(text):,} characters")
    return {
        "text": Output(planted.encode(), TEXT, "training_text.txt"),
        "canaries": Output(json_bytes(lines), JSON, "canaries.json"),
    }


def train_lm(ctx: StepContext) -> dict[str, Output]:
    """Train the character-level model on the planted text (deterministic given the seed)."""
    import time

    from mlwarden.models import CharLMConfig, save_char_lm, train_char_lm

    p = ctx.params
    text = ctx.input("text").decode("utf-8")
    vocab = "".join(sorted(set(text)))
    config = CharLMConfig(vocab=vocab, embed=p["embed"], hidden=p["hidden"],
                          layers=p["layers"], seq_len=p["seq_len"])  # fmt: skip
    losses: list[tuple[int, float]] = []
    every = max(p["steps"] // 10, 1)

    def progress(step: int, loss: float) -> None:
        if step % every == 0 or step == p["steps"]:
            losses.append((step, loss))
            ctx.progress(f"step {step}/{p['steps']}: loss {loss:.3f} nats/char")

    started = time.perf_counter()
    model = train_char_lm(
        text, config=config, steps=p["steps"], batch_size=p["batch_size"], lr=p["lr"],
        seed=p["seed"], progress=progress,
    )  # fmt: skip
    training = {"losses": losses, "seconds": time.perf_counter() - started, "chars": len(text)}
    return {
        "model": Output(save_char_lm(model), LANGUAGE_MODEL_MEDIA_TYPE, "model.safetensors"),
        "training": Output(json_bytes(training), JSON, "training.json"),
    }


def audit_lm(ctx: StepContext) -> dict[str, Output]:
    """Run the canary checks of the policy on the trained model."""
    from mlwarden.audit import canary_check
    from mlwarden.models import load_char_lm

    model = load_char_lm(ctx.input("model"))
    lines = ctx.json("canaries")
    findings = []
    for params in ctx.params["checks"]:
        check = CanaryCheck.model_validate({k: v for k, v in params.items() if k != "check"})
        ctx.progress(f"canary exposure of {len(lines)} lines")
        findings.append(canary_check(check, model, lines, seed=ctx.params["seed"]))
    return {
        "findings": Output(
            json_bytes([f.model_dump(mode="json") for f in findings]), JSON, "findings.json"
        )
    }


def lm_step_params(spec: LanguageModelSpec) -> dict[str, dict[str, Any]]:
    """Each step's slice of the spec (what its cache key depends on)."""
    return {
        "plant": {
            "max_chars": spec.corpus.max_chars,
            "repeats": spec.canaries.repeats,
            "seed": spec.canaries.seed,
        },
        "train": spec.train.model_dump(mode="json"),
        "audit": {
            "checks": [c.model_dump(mode="json") for c in spec.checks],
            "seed": spec.train.seed,
        },
    }


def check_lm_spec(raw: Any) -> bool:
    """Whether a parsed YAML mapping asks for the language-model pipeline."""
    return isinstance(raw, dict) and raw.get("task") == "language_model"


def unknown_task(raw: dict[str, Any], source: str) -> None:
    """A ``task`` other than the two known ones is a spec error, not a tabular spec."""
    task = raw.get("task")
    if task is not None and task != "language_model":
        raise SpecError(
            f"{source}: task: got {task!r}; expected 'language_model', 'early_exit' or no task"
        )
