"""``mlwarden models provenance`` prints a verified statement; ``models export`` hands a consumer
the model, its model-signing signature, the statement, the key and the command to check them."""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
from pathlib import Path

import pytest

from mlwarden.cli import main
from mlwarden.lineage import LineageStore, Signer
from tests.models.test_provenance import MODEL_SIGNING, register_directly


@pytest.fixture
def signed_store(tmp_path: Path) -> Path:
    """A store holding imported@1, registered with provenance by the session's key dir."""
    pytest.importorskip("model_signing")
    store = LineageStore(tmp_path / "store")
    try:
        register_directly(store, Signer.load_or_create(), b"a small model file")
    finally:
        store.close()
    return tmp_path / "store"


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_provenance_prints_the_verified_statement_or_its_envelope(
    signed_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(
        capsys, "models", "provenance", "imported@1", "--store", str(signed_store)
    )
    assert code == 0, err
    statement = json.loads(out)
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["subject"][0]["name"] == "model.skops"
    code, out, err = _cli(
        capsys, "models", "provenance", "imported@1", "--envelope", "--store", str(signed_store)
    )
    assert code == 0, err
    envelope = json.loads(out)
    assert json.loads(base64.b64decode(envelope["payload"])) == statement


def test_export_writes_the_files_and_the_command_that_verifies_them(
    signed_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "for-them"
    code, out, err = _cli(
        capsys, "models", "export", "imported@1", "-o", str(folder), "--store", str(signed_store)
    )
    assert code == 0, err
    command = out.strip().splitlines()[-1]
    assert command.startswith("model_signing verify key ")
    for name in ("model.skops", "model.sig", "provenance.intoto.jsonl", "model-signing.pub"):
        assert (folder / name).is_file()
        assert str(folder / name) in out
    argv = shlex.split(command)
    ran = subprocess.run([str(MODEL_SIGNING), *argv[1:]], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    relative = (folder / "VERIFY.txt").read_text().strip().splitlines()[-1]
    inside = subprocess.run(
        [str(MODEL_SIGNING), *shlex.split(relative)[1:]], cwd=folder, capture_output=True
    )
    assert inside.returncode == 0

    code, _, err = _cli(
        capsys, "models", "export", "imported@1", "-o", str(folder), "--store", str(signed_store)
    )
    assert code != 0
    assert "already holds model.skops" in err and "empty or new folder" in err


def test_a_version_without_provenance_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = LineageStore(tmp_path / "store")
    try:
        # An in-memory key: the version registers, without provenance (the key is not trusted
        # either, so pin it the way a verifier would).
        signer = Signer.generate()
        register_directly(store, signer, b"model")
    finally:
        store.close()
    trust = tmp_path / "trust.json"
    code, _, err = _cli(capsys, "signing", "trust", signer.public_key_hex, "--trust", str(trust))
    assert code == 0, err
    args = ("--store", str(tmp_path / "store"), "--trust", str(trust))
    code, _, err = _cli(capsys, "models", "provenance", "imported@1", *args)
    assert code == 4
    assert "imported@1 has no signed provenance" in err
    assert "not kept in a key directory" in err
    code, _, err = _cli(capsys, "models", "export", "imported@1", "-o", str(tmp_path / "x"), *args)
    assert code == 4 and "has no signed provenance" in err
    assert not (tmp_path / "x").exists()


def test_provenance_of_an_unknown_model_names_what_is_registered(
    signed_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _cli(capsys, "models", "provenance", "nope@1", "--store", str(signed_store))
    assert code == 4
    assert "no model named 'nope'" in err and "imported" in err
