"""``mlwarden models compare A B`` over a decision log holding analysts' feedback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlwarden.cli import app
from mlwarden.cli._app import main
from mlwarden.errors import ParameterError, RecordNotFoundError
from mlwarden.serve import SERVE_DB, DecisionLog
from mlwarden.serve._decisions import DecisionRecord

SHA = "a" * 64


def _answer(label: str, p_phishing: float) -> dict[str, object]:
    return {
        "label": label,
        "probabilities": {"legitimate": 1 - p_phishing, "phishing": p_phishing},
    }


def _log_version(log: DecisionLog, ref: str, tp: int, fp: int, fn: int, tn: int) -> None:
    """One decision per confusion cell, each row labelled by an analyst."""
    cells = [
        ("phishing", "phishing", tp),
        ("phishing", "legitimate", fp),
        ("legitimate", "phishing", fn),
        ("legitimate", "legitimate", tn),
    ]
    for said, truth, n in cells:
        if not n:
            continue
        record = DecisionRecord(
            client="k1",
            model_ref=ref,
            model_sha256=SHA,
            lineage_head=SHA,
            input=[{"x": i} for i in range(n)],
            output=[_answer(said, 0.9 if said == "phishing" else 0.1)] * n,
            latency_ms=1.0,
        )
        log.append(record)
        log.flush()
        log.feedback(record.request_id, [truth] * n, "analyst")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compare")
    with DecisionLog(root / SERVE_DB) as log:
        _log_version(log, "phish@1", tp=40, fp=10, fn=10, tn=40)  # P = R = F1 = 0.8
        _log_version(log, "phish@2", tp=48, fp=2, fn=2, tn=48)  # P = R = F1 = 0.96
        _log_version(log, "phish@3", tp=4, fp=1, fn=1, tn=4)  # 10 rows: too few
    return root


def invoke(store: Path, *args: str) -> tuple[int, str, BaseException | None]:
    args = ("models", "compare", *args, "--store", str(store))
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "160"})
    return result.exit_code, result.output, result.exception


def test_compare_names_the_better_version_with_intervals(store: Path) -> None:
    code, output, _ = invoke(store, "phish@1", "phish@2")
    assert code == 0, output
    assert "phish@2: phish@2 has a higher F1 than phish@1 by 0.160" in output
    assert "0.800" in output and "0.960" in output  # intervals may wrap on narrow terminals
    code, output, _ = invoke(store, "phish@1", "phish@2", "--json")
    result = json.loads(output)
    assert result["positive"] == "phishing" and result["verdict"] == "b"
    f1, precision, recall = result["differences"]
    assert f1["difference"] == pytest.approx(0.16) and f1["significant"]
    assert precision["a"] == pytest.approx(0.8) and precision["b"] == pytest.approx(0.96)
    # recall 40/50 vs 48/50: pooled .88, z = .16 / .065 = 2.46, p = .0139
    assert recall["p_value"] == pytest.approx(0.0139, abs=5e-4) and recall["significant"]
    # every answer said .9 for phishing, .1 otherwise: ECE = |.9 - .8| * .5 + |.1 - .2| * .5
    assert result["efficacy_a"]["calibration_error"] == pytest.approx(0.1)
    assert result["efficacy_a"]["labelled"] == 100


def test_too_few_labels_are_inconclusive_and_the_window_limits_rows(store: Path) -> None:
    code, output, _ = invoke(store, "phish@1", "phish@3")
    assert code == 0, output
    assert "inconclusive: too few labelled decisions: phish@1 has 100, phish@3 has 10" in output
    code, output, _ = invoke(store, "phish@1", "phish@2", "--window", "20", "--json")
    result = json.loads(output)
    assert result["efficacy_a"]["labelled"] == 20 and result["efficacy_b"]["labelled"] == 20
    # phish@1's last 20 labelled rows are its true negatives: no positive among them
    assert result["efficacy_a"]["recall"]["value"] is None


def test_another_positive_class_flips_what_is_measured(store: Path) -> None:
    code, output, _ = invoke(store, "phish@1", "phish@2", "--positive", "legitimate", "--json")
    assert code == 0
    result = json.loads(output)
    assert result["positive"] == "legitimate"
    assert result["efficacy_a"]["recall"]["value"] == pytest.approx(40 / 50)  # tn / (tn + fp)


def test_unknown_versions_and_bad_references_are_refused(store: Path, tmp_path: Path) -> None:
    _, _, exc = invoke(store, "phish@1", "phish@9")
    assert isinstance(exc, RecordNotFoundError)
    assert "phish@9 has no labelled decisions" in str(exc)
    assert "versions with feedback: phish@1, phish@2, phish@3" in str(exc)
    _, _, exc = invoke(store, "phish", "phish@2")
    assert isinstance(exc, ParameterError) and "NAME@VERSION" in str(exc)
    _, _, exc = invoke(store, "phish@1", "phish@1")
    assert isinstance(exc, ParameterError) and "two different versions" in str(exc)
    _, _, exc = invoke(tmp_path, "phish@1", "phish@2")
    assert isinstance(exc, RecordNotFoundError) and "no decision log" in str(exc)


def test_errors_exit_with_their_code_and_one_line(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["models", "compare", "phish@1", "nope@1", "--store", str(store)])
    assert code == RecordNotFoundError.exit_code
    err = capsys.readouterr().err
    assert "nope@1 has no labelled decisions" in " ".join(err.split())
