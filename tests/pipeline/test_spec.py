"""Spec errors name the field, its line, what was given and what is expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlwarden.errors import SpecError
from mlwarden.pipeline import load_spec, parse_spec

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["phishing", "adult"])
def test_shipped_specs_are_valid(name: str) -> None:
    spec = load_spec(REPO / "pipelines" / f"{name}.yaml")
    assert spec.name == name
    assert spec.gate.mode == "fail-closed"


def _error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="spec.yaml")
    return str(info.value)


def test_an_out_of_range_value_names_field_line_given_and_expected(fast_spec_text: str) -> None:
    message = _error(fast_spec_text.replace("test_size: 0.3", "test_size: 1.5"))
    assert message.startswith("spec.yaml:7: split.test_size: got 1.5; expected:")
    assert "less than 1" in message


def test_a_missing_section_is_named(fast_spec_text: str) -> None:
    text = fast_spec_text.replace("register:\n  name: german\n", "")
    assert "registry" in _error(text) or "register" in _error(text)
    assert "got nothing" in _error(text)


def test_an_unknown_key_is_refused(fast_spec_text: str) -> None:
    message = _error(fast_spec_text.replace("  seed: 3\n", "  seed: 3\n  sed: 4\n"))
    assert "spec.yaml:9: split.sed: got 4; expected: Extra inputs are not permitted" in message


def test_an_unknown_dataset_lists_the_bundled_ones(fast_spec_text: str) -> None:
    message = _error(fast_spec_text.replace("dataset: german", "dataset: nsl-kdd"))
    assert message.startswith("spec.yaml:3: data.dataset: got 'nsl-kdd'")
    assert "adult, digits, german, phishing" in message


def test_an_unknown_check_lists_the_known_ones(fast_spec_text: str) -> None:
    message = _error(fast_spec_text.replace("check: performance_floor", "check: vibes"))
    assert "spec.yaml:19: checks.0: got" in message
    assert "unknown check 'vibes'" in message and "performance_floor" in message


def test_a_bad_check_threshold_is_named(fast_spec_text: str) -> None:
    message = _error(fast_spec_text.replace("min: 0.7", "min: 7"))
    assert "parameter 'min'" in message and "got 7" in message


def test_an_unknown_estimator_parameter_points_at_its_line(fast_spec_text: str) -> None:
    message = _error(fast_spec_text.replace("    C: [0.1, 1.0]", "    depth: [1, 2]"))
    assert message.startswith(
        "spec.yaml:14: train.grid.depth: got 'depth'; expected: a parameter of logistic_regression"
    )


def test_malformed_yaml_names_the_line() -> None:
    message = _error("name: x\ndata: [unclosed\n")
    assert message.startswith("spec.yaml:")
    assert "not valid YAML" in message


def test_a_missing_spec_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")


def test_a_path_source_needs_a_label(fast_spec_text: str) -> None:
    text = fast_spec_text.replace("  dataset: german\n  label: credit\n", "  path: x.csv\n")
    assert "needs 'label'" in _error(text)


def test_relative_paths_resolve_against_the_spec_folder(
    tmp_path: Path, fast_spec_text: str
) -> None:
    spec_file = tmp_path / "sub" / "p.yaml"
    spec_file.parent.mkdir()
    spec_file.write_text(fast_spec_text.replace("dataset: german", "path: data/t.csv"))
    spec = load_spec(spec_file)
    assert spec.data.path == (tmp_path / "sub" / "data" / "t.csv").resolve()


def test_the_digest_ignores_formatting(fast_spec_text: str) -> None:
    reformatted = "# a comment\n" + fast_spec_text.replace("test_size: 0.3", "test_size: 0.30")
    assert parse_spec(reformatted).digest() == parse_spec(fast_spec_text).digest()


HARDEN = "  n_jobs: 1\n  harden: {threat_model: THREAT, cost_budget: 2}\n"
EVASION = "  - {check: evasion, threat_model: THREAT, cost_budget: 2, max_success: 0.5}\n"


def _with_threat_models(text: str, threat: str) -> str:
    text = text.replace("  n_jobs: 1\n", HARDEN.replace("THREAT", threat))
    return text.replace("gate:\n", EVASION.replace("THREAT", threat) + "gate:\n")


def test_threat_model_paths_resolve_against_the_spec_folder(
    tmp_path: Path, fast_spec_text: str
) -> None:
    threat = tmp_path / "sub" / "threats" / "t.yaml"
    threat.parent.mkdir(parents=True)
    threat.write_text("target: good\nfeatures:\n  age: {min: 18, max: 80}\n")
    spec_file = tmp_path / "sub" / "p.yaml"
    spec_file.write_text(_with_threat_models(fast_spec_text, "threats/t.yaml"))
    spec = load_spec(spec_file)
    assert spec.train.harden is not None
    assert spec.train.harden.threat_model == str(threat.resolve())
    assert spec.checks[1].params["threat_model"] == str(threat.resolve())
    bundled = parse_spec(_with_threat_models(fast_spec_text, "phishing"))
    assert bundled.checks[1].params["threat_model"] == "phishing"  # a name, left as it is


def test_a_missing_threat_model_file_names_the_field_line_and_path(
    tmp_path: Path, fast_spec_text: str
) -> None:
    spec_file = tmp_path / "p.yaml"
    spec_file.write_text(
        fast_spec_text.replace("gate:\n", EVASION.replace("THREAT", "nope.yml") + "gate:\n")
    )
    with pytest.raises(SpecError) as info:
        load_spec(spec_file)
    message = str(info.value)
    assert message.startswith(f"{spec_file}:22: checks.1.threat_model: file ")
    assert str(tmp_path / "nope.yml") in message and "does not exist" in message
    spec_file.write_text(_with_threat_models(fast_spec_text, "nope.yml"))
    with pytest.raises(SpecError, match=r":18: train\.harden\.threat_model: file .*nope\.yml"):
        load_spec(spec_file)
