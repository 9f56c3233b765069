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
from typing import Any

from mlwarden.audit import CanaryCheck
from mlwarden.data import list_corpora, load_text
from mlwarden.errors import DataError
from mlwarden.models import LANGUAGE_MODEL_MEDIA_TYPE
from mlwarden.pipeline._context import Output, StepContext
from mlwarden.pipeline._io import JSON, json_bytes
from mlwarden.pipeline._lm_spec import LanguageModelSpec

TEXT = "text/plain; charset=utf-8"


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
