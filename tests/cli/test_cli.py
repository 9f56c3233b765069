"""The command line end to end: the demo, the cache, lineage and models commands, and errors."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mlwarden import __version__
from mlwarden.lineage import LineageStore
from mlwarden.models import ModelRegistry
from tests.conftest import FAST_SPEC

REPO = Path(__file__).resolve().parents[2]
# The script installed beside this interpreter (a venv need not be on PATH).
_BESIDE = Path(sys.executable).parent / "mlwarden"
EXE = str(_BESIDE) if _BESIDE.exists() else shutil.which("mlwarden")


def mlwarden(*args: str, cwd: Path, columns: int = 200) -> subprocess.CompletedProcess[str]:
    """Run the installed console script, as a user would (in a terminal ``columns`` wide)."""
    assert EXE is not None, "the mlwarden console script is not installed"
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1"}
    return subprocess.run([EXE, *args], cwd=cwd, capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where the phishing demo has run once, cold, in an 80-column terminal.

    Its output is kept in ``run.out`` for the tests that read what the user saw.
    """
    folder = tmp_path_factory.mktemp("demo")
    result = mlwarden("run", str(REPO / "pipelines" / "phishing.yaml"), cwd=folder, columns=80)
    (folder / "run.out").write_text(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "registered phishing@1" in result.stdout
    return folder


@pytest.mark.slow
def test_the_phishing_pipeline_registers_a_model_that_loads_and_predicts(demo_dir: Path) -> None:
    from mlwarden import datasets
    from mlwarden.lineage import LineageStore
    from mlwarden.models import ModelRegistry

    version, model = ModelRegistry(LineageStore(demo_dir / ".mlwarden")).load("phishing@latest")
    d = datasets.load("phishing")
    predictions = model.predict(d.X.head(200))
    assert (predictions == d.y.head(200).to_numpy()).mean() > 0.9
    assert version.manifest.metrics["f1"] >= 0.93


@pytest.mark.slow
def test_the_demo_gates_on_evasion_and_hardening_shows_what_it_bought_and_cost(
    demo_dir: Path,
) -> None:
    shown = (demo_dir / "run.out").read_text()
    report = json.loads(next((demo_dir / ".mlwarden" / "reports").rglob("report.json")).read_text())
    evasion = next(c for c in report["checks"] if c["check"] == "evasion")
    held_out = report["search"]["hardening"]["held_out"]
    before, after = held_out["evasion_before"], held_out["evasion_after"]
    # The shipped model passes the evasion check: the whole interval is within the limit ...
    from mlwarden.audit._stats import proportion_interval

    flipped, attacked = evasion["details"]["flipped"], evasion["details"]["attacked"]
    assert evasion["passed"] and proportion_interval(flipped, attacked)[1] <= evasion["threshold"]
    # ... which the same model without hardening fails, on the same rows, by the same check.
    assert before["interval"][0] > evasion["threshold"]
    assert (after["flipped"], after["attacked"]) == (flipped, attacked)
    assert report["gate"]["passed"]
    # The user sees evasion and the clean metrics before and after, side by side.
    assert "hardening: the same 2,764 held-out rows before and after" in shown
    budget = report["search"]["hardening"]["cost_budget"]
    row = next(line for line in shown.splitlines() if f"evasion at cost <= {budget:g}" in line)
    assert f"{before['success']:.1%} ({before['flipped']}/{before['attacked']})" in row
    assert f"{after['success']:.1%} ({after['flipped']}/{after['attacked']})" in row
    for name in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        line = next(x for x in shown.splitlines() if x.startswith(f"│ {name} "))
        assert f"{held_out['metrics_before'][name]:.4f}" in line
        assert f"{held_out['metrics_after'][name]:.4f}" in line
    lowered = [
        name
        for name, value in held_out["metrics_after"].items()
        if value < held_out["metrics_before"][name] - 0.001
    ]
    assert lowered  # hardening the demo model costs some precision, and the run says so
    said = next(x for x in shown.splitlines() if x.startswith("what hardening cost"))
    assert all(name in said for name in lowered)


@pytest.mark.slow
def test_report_paths_are_never_wrapped_mid_word_at_80_columns(demo_dir: Path) -> None:
    lines = (demo_dir / "run.out").read_text().splitlines()
    folder = next((demo_dir / ".mlwarden" / "reports" / "phishing").iterdir())
    relative = folder.relative_to(demo_dir)
    assert f"report: {relative / 'report.html'}" in lines
    assert f"        {relative / 'report.json'}" in lines
    # Lines longer than the terminal stay whole, so the paths in them can be copied.
    ci = f"for CI: {relative / 'report.sarif'}, report.junit.xml beside it"
    assert ci in lines and len(ci) > 80
    spec = REPO / "pipelines" / "phishing.yaml"
    header = f"mlwarden {__version__}: pipeline phishing from {spec}, store .mlwarden"
    assert header in lines and len(header) > 80


@pytest.mark.slow
def test_a_second_run_is_all_cache_hits_and_registers_nothing_new(demo_dir: Path) -> None:
    result = mlwarden("demo", cwd=demo_dir)
    assert result.returncode == 0, result.stderr
    assert "0 step(s) executed, 8 cache hit(s)" in result.stdout
    assert "registered phishing@1" in result.stdout


@pytest.mark.slow
def test_every_run_writes_a_json_and_a_self_contained_html_report(demo_dir: Path) -> None:
    reports = sorted((demo_dir / ".mlwarden" / "reports" / "phishing").glob("*/report.json"))
    assert reports
    report = json.loads(reports[0].read_text())
    assert report["status"] == "completed"
    assert report["model_version"] == "phishing@1"
    checks = {"performance_floor", "generalization_gap", "evasion"}
    assert {c["check"] for c in report["checks"]} == checks
    html = (reports[0].parent / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5  # checks, evasion, confusion, ROC, SHAP
    assert "before hardening</th><th>after hardening</th>" in html
    assert 'src="http' not in html and "<script" not in html
    assert "performance_floor" in html and "phishing@1" in html


@pytest.mark.slow
def test_lineage_verify_reports_ok(demo_dir: Path) -> None:
    result = mlwarden("lineage", "verify", cwd=demo_dir)
    assert result.returncode == 0
    assert result.stdout.startswith("ok: ") and "records" in result.stdout


@pytest.mark.slow
def test_lineage_trace_shows_data_code_params_and_checks(demo_dir: Path) -> None:
    result = mlwarden("lineage", "trace", "phishing@1", cwd=demo_dir)
    assert result.returncode == 0, result.stderr
    for expected in (
        "raw.parquet",
        "train exec",
        "code ",
        '"learning_rate"',
        "performance_floor",
        "ingest exec",
        '"dataset": "phishing"',
    ):
        assert expected in result.stdout, expected
    as_json = mlwarden("lineage", "trace", "phishing@1", "--json", "--downstream", cwd=demo_dir)
    data = json.loads(as_json.stdout)
    model = data["upstream"][0]
    assert model["role"] == "model" and model["produced_by"]["step"] == "train"


@pytest.mark.slow
def test_models_list_and_show(demo_dir: Path) -> None:
    listed = mlwarden("models", "list", cwd=demo_dir)
    assert "phishing@1" in listed.stdout and "passed" in listed.stdout
    shown = mlwarden("models", "show", "phishing@latest", cwd=demo_dir)
    assert shown.returncode == 0
    assert "signature and artifact hashes verified" in shown.stdout


def _copy_store(demo_dir: Path, tmp_path: Path) -> Path:
    shutil.copytree(demo_dir / ".mlwarden", tmp_path / ".mlwarden")
    return tmp_path


@pytest.mark.slow
def test_verify_fails_with_one_line_naming_the_edited_record(
    demo_dir: Path, tmp_path: Path
) -> None:
    folder = _copy_store(demo_dir, tmp_path)
    db = sqlite3.connect(folder / ".mlwarden" / "lineage.db")
    db.execute("DROP TRIGGER records_no_update")
    db.execute("UPDATE records SET created_at = '2020-01-01T00:00:00+00:00' WHERE seq = 9")
    db.commit()
    result = mlwarden("lineage", "verify", cwd=folder)
    assert result.returncode == 4
    assert result.stderr.startswith("FAILED: record 9 ")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_tampered_model_cannot_be_shown_or_loaded(demo_dir: Path, tmp_path: Path) -> None:
    folder = _copy_store(demo_dir, tmp_path)
    from mlwarden.lineage import LineageStore
    from mlwarden.models import ModelRegistry

    store = LineageStore(folder / ".mlwarden")
    sha = ModelRegistry(store).get("phishing@1").manifest.model_sha256
    path = store.artifacts.path(sha)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    result = mlwarden("models", "show", "phishing@1", cwd=folder)
    assert result.returncode == 5
    assert "does not match its hash" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("run", "missing.yaml"), 2, "pipeline spec missing.yaml does not exist"),
        (("models", "show", "nothing@1"), 4, "no model named 'nothing'"),
        (("lineage", "verify", "--store", "nowhere"), 4, "no store at nowhere"),
        (("lineage", "trace", "abc"), 4, "too short"),
        (("models", "show", "a[bold]b@1"), 4, "'a[bold]b@1' is malformed"),  # no markup
        (("frobnicate",), 2, "No such command"),
    ],
)
def test_errors_are_one_clear_line_and_an_exit_code(
    tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    result = mlwarden(*args, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_a_spec_error_exits_2_naming_the_line(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(FAST_SPEC.replace("test_size: 0.3", "test_size: -1"))
    result = mlwarden("run", str(spec), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{spec}:7: split.test_size: got -1; expected:" in result.stderr


def test_a_missing_data_file_exits_3(tmp_path: Path) -> None:
    spec = tmp_path / "p.yaml"
    spec.write_text(FAST_SPEC.replace("dataset: german", "path: nope.csv"))
    result = mlwarden("run", str(spec), cwd=tmp_path)
    assert result.returncode == 3
    assert "data.path: file" in result.stderr and "does not exist" in result.stderr


def test_a_gate_failure_exits_1_with_a_summary(tmp_path: Path) -> None:
    spec = tmp_path / "strict.yaml"
    spec.write_text(FAST_SPEC.replace("min: 0.7", "min: 0.99"))
    result = mlwarden("run", str(spec), cwd=tmp_path)
    assert result.returncode == 1
    assert "gate (fail-closed) refused the model, not registered" in result.stderr
    assert "performance_floor" in result.stderr
    assert "report:" in result.stdout


def test_run_on_ray_registers_what_a_local_run_registers(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    spec = tmp_path / "spec.yaml"
    spec.write_text(FAST_SPEC)
    on_ray = mlwarden(
        "run",
        str(spec),
        "--executor",
        "ray",
        "--ray-address",
        "local",
        "--store",
        "ray",
        cwd=tmp_path,
    )
    assert on_ray.returncode == 0, on_ray.stderr
    local = mlwarden("run", str(spec), "--workers", "2", "--store", "local", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    models = [
        ModelRegistry(LineageStore(tmp_path / name)).get("german@1").manifest.model_sha256
        for name in ("ray", "local")
    ]
    assert models[0] == models[1]
    assert "registered german@1" in on_ray.stdout
    mixed = mlwarden("run", str(spec), "--ray-address", "auto", cwd=tmp_path)
    assert mixed.returncode == 2 and "--ray-address is for --executor ray" in mixed.stderr


def test_schema_infer_prints_an_editable_schema(tmp_path: Path) -> None:
    result = mlwarden("schema", "infer", "adult", "--label", "income", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    import yaml

    from mlwarden.data import TableSchema

    schema = TableSchema.model_validate(yaml.safe_load(result.stdout))
    assert schema.label == "income"
    assert (
        schema.columns["workclass"].nullable and "?" not in schema.columns["workclass"].categories
    )
    assert schema.columns["age"].min == 17


def test_validate_quarantines_planted_bad_rows_and_fails_the_batch(tmp_path: Path) -> None:
    from mlwarden import datasets

    frame = datasets.load("adult").frame.head(2000).copy()
    frame["age"] = frame["age"].astype(object)
    frame.loc[3, "age"] = 400  # out of range
    frame.loc[5, "workclass"] = "Pirate"  # unknown category
    frame.loc[7, "income"] = None  # empty label
    frame.loc[9, "age"] = "forty"  # malformed number
    frame.to_csv(tmp_path / "batch.csv", index=False)
    schema = tmp_path / "schema.yaml"
    schema.write_text(datasets.load("adult").schema.to_yaml())
    result = mlwarden(
        "validate", "batch.csv", "--schema", "schema.yaml", "--out", "v", cwd=tmp_path
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2,000 rows in = 1,996 accepted + 4 quarantined" in result.stdout
    assert "FAILED: 0.20% quarantined > 0.00% allowed" in result.stderr
    quarantine = (tmp_path / "v" / "quarantine.csv").read_text()
    for reason in (
        "age: above max 150",
        "workclass: not an allowed value",
        "income: missing value",
        "age: not a number",
    ):
        assert reason in quarantine
    allowed = mlwarden(
        "validate",
        "batch.csv",
        "--schema",
        "schema.yaml",
        "--out",
        "v",
        "--max-rejected",
        "0.01",
        cwd=tmp_path,
    )
    assert allowed.returncode == 0 and "passed" in allowed.stdout


def test_validate_against_a_reference_reports_drift(tmp_path: Path) -> None:
    from mlwarden import datasets

    frame = datasets.load("german").frame.copy()
    frame["credit_amount"] = frame["credit_amount"] * 3
    frame.to_csv(tmp_path / "shifted.csv", index=False)
    result = mlwarden("validate", "shifted.csv", "--against", "german", cwd=tmp_path)
    assert result.returncode == 1
    assert "drift in credit_amount" in result.stderr
    report = json.loads(
        (tmp_path / "mlwarden-validation" / "shifted" / "validation.json").read_text()
    )
    assert report["drift"]["drifted_columns"] == ["credit_amount"]


def test_validate_needs_a_schema_or_a_reference(tmp_path: Path) -> None:
    result = mlwarden("validate", "german", cwd=tmp_path)
    assert result.returncode == 2
    assert "give --schema FILE or --against REFERENCE" in result.stderr


@pytest.mark.slow
def test_audit_a_registered_model_on_its_own_splits(demo_dir: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "checks:\n"
        "  - {check: performance_floor, metric: f1, min: 0.9}\n"
        "  - {check: attribution_share, max_share: 0.9, rows: 300, n_repeats: 1}\n"
        "  - {check: ood_confidence, min_auroc: 0.99, rows: 200}\n"
    )
    result = mlwarden(
        "audit",
        "--model",
        "phishing@1",
        "--policy",
        str(policy),
        "--out",
        str(tmp_path / "out"),
        cwd=demo_dir,
    )
    assert result.returncode == 1, result.stdout + result.stderr  # the strict OOD bar fails
    assert "pass performance_floor" in result.stdout
    assert "FAIL ood_confidence" in result.stdout
    sarif = json.loads((tmp_path / "out" / "report.sarif").read_text())
    levels = {r["ruleId"]: r["level"] for r in sarif["runs"][0]["results"]}
    assert levels == {
        "performance_floor": "note",
        "attribution_share": "note",
        "ood_confidence": "error",
    }
    assert (tmp_path / "out" / "report.junit.xml").exists()


def test_audit_a_model_file_on_a_labelled_table(tmp_path: Path) -> None:
    from sklearn.tree import DecisionTreeClassifier

    from mlwarden import datasets
    from mlwarden.models import dumps_model

    d = datasets.load("phishing")
    model = DecisionTreeClassifier(max_depth=4, random_state=0).fit(d.X, d.y)
    (tmp_path / "tree.skops").write_bytes(dumps_model(model))
    result = mlwarden(
        "audit",
        "--model",
        "tree.skops",
        "--data",
        "phishing",
        "--label",
        "Result",
        "--checks",
        "performance",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--model", "x.skops", "--checks", "vibes"), "unknown check group 'vibes'"),
        (("--model", "nothing@1", "--checks", "ood"), "no model named 'nothing'"),
    ],
)
def test_audit_errors_are_one_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = mlwarden("audit", *args, cwd=tmp_path)
    assert result.returncode in (2, 4)
    assert message in result.stderr and "Traceback" not in result.stderr


def test_audit_an_onnx_model_file(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    skl2onnx = pytest.importorskip("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.tree import DecisionTreeClassifier

    from mlwarden import datasets

    d = datasets.load("phishing")
    model = DecisionTreeClassifier(max_depth=4, random_state=0).fit(d.X.astype(float), d.y)
    onx = skl2onnx.convert_sklearn(model, initial_types=[("X", FloatTensorType([None, 23]))])
    (tmp_path / "tree.onnx").write_bytes(onx.SerializeToString())
    result = mlwarden(
        "audit",
        "--model",
        "tree.onnx",
        "--data",
        "phishing",
        "--label",
        "Result",
        "--checks",
        "performance,evasion",
        cwd=tmp_path,
    )
    assert "pass performance_floor" in result.stdout, result.stdout + result.stderr
    assert "evasion:" in result.stdout
    assert result.returncode == 1  # a depth-4 tree is evadable at cost 3


@pytest.mark.slow
def test_audit_a_registered_model_on_another_table(demo_dir: Path) -> None:
    ok = mlwarden(
        "audit",
        "--model",
        "phishing@1",
        "--data",
        "phishing",
        "--checks",
        "performance",
        cwd=demo_dir,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "held-out roc_auc" in ok.stdout
    wrong = mlwarden(
        "audit",
        "--model",
        "phishing@1",
        "--data",
        "german",
        "--checks",
        "performance",
        cwd=demo_dir,
    )
    assert wrong.returncode == 3
    assert "label column 'Result' is not in german" in wrong.stderr


def test_evasion_on_a_table_with_columns_of_its_own_says_how_to_make_a_threat_model(
    tmp_path: Path,
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlwarden import datasets
    from mlwarden.models import dumps_model

    d = datasets.load("german")
    numbers = d.frame.select_dtypes("number").assign(credit=d.y)
    numbers.to_csv(tmp_path / "credit.csv", index=False)
    X = numbers.drop(columns="credit")
    # scaled: unscaled amounts leave lbfgs short of convergence on some BLAS builds
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, d.y)
    (tmp_path / "lr.skops").write_bytes(dumps_model(model))
    args = ("--model", "lr.skops", "--data", "credit.csv", "--label", "credit")
    result = mlwarden("audit", *args, "--checks", "evasion", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "evasion needs a threat model for these columns" in lines[0]
    assert "mlwarden threat-model init credit.csv --label credit" in lines[0]
    # A policy naming the bundled threat model on these columns: the same, from the check.
    (tmp_path / "phishing_policy.yaml").write_text(
        "checks:\n  - {check: evasion, threat_model: phishing, cost_budget: 1, max_success: 0.5}\n"
    )
    result = mlwarden("audit", *args, "--policy", "phishing_policy.yaml", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no column for 21 of the threat model's 21 features" in lines[0]
    assert f"{X.shape[1]} of its {X.shape[1]} columns are not in it ('duration_months'" in lines[0]
    assert "evasion needs a threat model for these columns" in lines[0]
    assert "mlwarden threat-model init DATA --label LABEL" in lines[0]
    assert "Iframe" not in lines[0]  # a few of the other data's names, not all 21
    # The command it names writes one for these columns, and the check then runs with it.
    made = mlwarden(
        "threat-model", "init", "credit.csv", "--label", "credit", "--out", "t.yaml", cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    assert "wrote t.yaml: 7 features" in made.stdout
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "checks:\n  - {check: evasion, threat_model: t.yaml, cost_budget: 1, max_success: 0.5,"
        " rows: 20}\n"
    )
    audited = mlwarden("audit", *args, "--policy", "policy.yaml", cwd=tmp_path)
    assert "evasion" in audited.stdout and "Traceback" not in audited.stderr
    assert audited.returncode in (0, 1), audited.stdout + audited.stderr


def test_threat_model_init_writes_a_starter_that_loads_and_never_overwrites(
    tmp_path: Path,
) -> None:
    from mlwarden import datasets
    from mlwarden.attacks import ThreatModel, draft_threat_model

    printed = mlwarden("threat-model", "init", "german", "--label", "credit", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    frame = datasets.load("german").frame
    assert ThreatModel.from_yaml_text(printed.stdout) == draft_threat_model(frame, "credit")
    frame.to_parquet(tmp_path / "german.parquet")
    target = tmp_path / "threat.yaml"
    args = ("threat-model", "init", "german.parquet", "--label", "credit", "--target", "bad")
    first = mlwarden(*args, "--out", "threat.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert ThreatModel.from_yaml(target).target == "bad"
    target.write_text("# my edits\n" + target.read_text())
    again = mlwarden(*args, "--out", "threat.yaml", cwd=tmp_path)
    assert again.returncode == 2
    assert "exists; give --force to overwrite it" in again.stderr
    assert target.read_text().startswith("# my edits")  # nothing lost
    forced = mlwarden(*args, "--out", "threat.yaml", "--force", cwd=tmp_path)
    assert forced.returncode == 0 and not target.read_text().startswith("# my edits")
    wrong = mlwarden("threat-model", "init", "german", "--label", "Credit", cwd=tmp_path)
    assert wrong.returncode == 3
    assert wrong.stderr.count("\n") == 1 and "--label: the table has no column 'Credit'" in (
        wrong.stderr
    )
