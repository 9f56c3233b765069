"""The language-model pipeline: planted canaries, a trained character model, exposure, gate."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")

from mlwarden.errors import ModelError, SpecError
from mlwarden.lineage import LineageStore, verify_store
from mlwarden.models import LANGUAGE_MODEL_MEDIA_TYPE, ModelRegistry
from mlwarden.pipeline import LanguageModelSpec, LocalExecutor, parse_spec
from tests.cli.test_cli import mlwarden

# Small enough to train in seconds; planted often enough that the model learns the line.
LM_SPEC = """\
task: language_model
name: tiny-lm
corpus:
  source: pydoc
  max_chars: 12000
canaries:
  lines: ["my card number is 4128"]
  repeats: 60
train:
  steps: 300
  hidden: 64
  seq_len: 48
checks:
  - check: canary
    max_exposure: 8
gate:
  mode: warn
register:
  name: tiny-lm
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store where the tiny language-model pipeline has run once."""
    root = tmp_path_factory.mktemp("lm") / "store"
    store = LineageStore(root)
    result = LocalExecutor(store).run(parse_spec(LM_SPEC))
    assert result.status == "completed", result.error
    assert result.model_version == "tiny-lm@1"
    store.close()
    return root


def test_a_language_model_spec_selects_the_language_model_pipeline() -> None:
    spec = parse_spec(LM_SPEC)
    assert isinstance(spec, LanguageModelSpec)
    assert spec.canaries.repeats == 60 and spec.checks[0].max_exposure == 8


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("task: language_model", "task: poetry"), "expected 'language_model'"),
        (("  repeats: 60", "  repeats: -1"), "repeats"),
        (('  lines: ["my card number is 4128"]', "  repeats2: 1"), "canaries"),
        (("    max_exposure: 8", "    max_exposure: 8\n    bits: 3"), "bits"),
    ],
)
def test_spec_errors_name_the_field(edit: tuple[str, str], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(LM_SPEC.replace(*edit))


def test_the_planted_canary_is_memorised_and_flagged_by_the_gate(trained: Path) -> None:
    store = LineageStore(trained)
    registry = ModelRegistry(store)
    version = registry.get("tiny-lm@latest")
    assert version.manifest.model_media_type == LANGUAGE_MODEL_MEDIA_TYPE
    gate = version.manifest.gate
    assert gate["mode"] == "warn" and not gate["passed"]  # registered, flagged
    finding = gate["findings"][0] if "findings" in gate else None
    assert finding is None or finding["check"] == "canary"
    _, lm = registry.load_language_model("tiny-lm@latest")
    planted, unseen = (
        lm.log_perplexity(["4128"], prefix="my card number is ")[0],
        min(lm.log_perplexity([f"{n:04d}"], prefix="my card number is ")[0] for n in (1234, 9876)),
    )
    assert planted < unseen  # the model prefers the secret it read
    assert set(version.manifest.artifacts) >= {"text", "canaries", "findings", "training"}
    assert verify_store(store).ok
    store.close()


def test_a_language_model_is_not_loaded_as_a_classifier(trained: Path) -> None:
    store = LineageStore(trained)
    with pytest.raises(ModelError, match="--checks canary"):
        ModelRegistry(store).load("tiny-lm@1")
    store.close()


def test_a_rerun_reuses_every_step(trained: Path) -> None:
    store = LineageStore(trained)
    result = LocalExecutor(store).run(parse_spec(LM_SPEC))
    assert [s.status for s in result.steps] == ["cached"] * 5
    store.close()


def test_audit_command_measures_canaries_from_a_file(trained: Path, tmp_path: Path) -> None:
    canaries = tmp_path / "canaries.txt"
    canaries.write_text("# planted\nmy card number is 4128\n")
    args = ["audit", "--model", "tiny-lm@latest", "--checks", "canary",
            "--canaries", str(canaries), "--store", str(trained)]  # fmt: skip
    strict = mlwarden(*args, "--max-exposure", "5", "--out", str(tmp_path / "a"), cwd=tmp_path)
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "FAIL canary" in strict.stdout and "control" in strict.stdout
    lenient = mlwarden(*args, "--max-exposure", "13.3", "--out", str(tmp_path / "b"), cwd=tmp_path)
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert (tmp_path / "b" / "report.html").read_text().count("canary exposure") >= 1


def test_audit_command_errors(trained: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    base = ["audit", "--model", "tiny-lm@1", "--store", str(trained)]
    no_file = mlwarden(*base, "--checks", "canary", cwd=tmp_path)
    assert no_file.returncode == 2 and "--canaries" in no_file.stderr
    no_lines = mlwarden(*base, "--checks", "canary", "--canaries", str(empty), cwd=tmp_path)
    assert no_lines.returncode == 3 and "lists no canary lines" in no_lines.stderr
    mixed = mlwarden(*base, "--checks", "canary,ood", "--canaries", str(empty), cwd=tmp_path)
    assert mixed.returncode == 2 and "on its own" in mixed.stderr
    tabular = mlwarden(*base, "--checks", "ood", cwd=tmp_path)
    assert tabular.returncode == 5 and "--checks canary" in tabular.stderr
