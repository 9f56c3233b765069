"""The attacker of issue 12 writes the whole store (and its database) but not the user's key dir.

Each test plays that attacker against a real registered model, then checks that ``models show``,
``models list``, loading, ``audit --model`` and serving refuse with one clear line (exit 5).
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mlwarden.cli import main
from mlwarden.errors import UntrustedKeyError
from mlwarden.lineage import LineageStore, Signer, TrustPolicy, rotate_key
from mlwarden.lineage._records import record_hash
from mlwarden.models import Manifest, ModelRegistry, dumps_model
from mlwarden.pipeline import LocalExecutor, parse_spec
from tests.conftest import FAST_SPEC

PG_URL = os.environ.get("MLWARDEN_TEST_POSTGRES_URL")


@pytest.fixture(scope="module")
def german_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with german@1 registered, signed by the session's key dir key."""
    root = tmp_path_factory.mktemp("trust") / "store"
    store = LineageStore(root)
    result = LocalExecutor(store).run(parse_spec(FAST_SPEC))
    assert result.model_version == "german@1", result.error
    store.close()
    return root


@pytest.fixture
def copy(german_store: Path, tmp_path: Path) -> Path:
    """A private copy of the store for one attack."""
    return Path(shutil.copytree(german_store, tmp_path / "store"))


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def _rewrite_with_own_key(store: LineageStore) -> Signer:
    """Swap the model for a constant classifier, re-sign the manifest with a key the attacker
    made, recompute every record hash from there on and rewrite HEAD: a consistent chain."""
    from sklearn.dummy import DummyClassifier

    attacker = Signer.generate()
    record = store.records("model_version", subject="german")[-1]
    manifest = Manifest.model_validate(record.payload["manifest"])
    constant = DummyClassifier(strategy="constant", constant="good").fit(
        [[0], [1]], ["good", "bad"]
    )
    swapped_sha = store.artifacts.write(dumps_model(constant))
    forged = manifest.model_copy(
        update={"model_sha256": swapped_sha, "signer": attacker.public_key_hex}
    )
    payload = {
        "manifest": forged.model_dump(mode="json"),
        "signature": attacker.sign(forged.message()),
    }
    _rechain(store, {record.seq: payload})
    return attacker


def _rechain(store: LineageStore, payloads: dict[int, dict[str, object]]) -> None:
    """Replace payloads and recompute every hash after the first change, triggers off."""
    from mlwarden.lineage import canonical_json

    engine = create_engine(store.url)
    pg = engine.dialect.name == "postgresql"
    records = list(store.iter_all())
    with engine.begin() as conn:
        if pg:
            conn.execute(text("ALTER TABLE records DISABLE TRIGGER records_append_only"))
        else:
            conn.execute(text("DROP TRIGGER records_no_update"))
        prev = records[0].prev_hash
        for r in records:
            payload = payloads.get(r.seq, r.payload)
            digest = record_hash(
                fmt=r.format, seq=r.seq, kind=r.kind, subject=r.subject, key=r.key,
                payload=payload, created_at=r.created_at, prev_hash=prev,
            )  # fmt: skip
            if payload is not r.payload or digest != r.hash:
                conn.execute(
                    text("UPDATE records SET payload=:p, prev_hash=:prev, hash=:h WHERE seq=:s"),
                    {"p": canonical_json(payload).decode(), "prev": prev, "h": digest, "s": r.seq},
                )
            prev = digest
        if pg:
            conn.execute(text("ALTER TABLE records ENABLE TRIGGER records_append_only"))
    engine.dispose()
    last = records[-1].seq
    (store.root / "HEAD").write_bytes(canonical_json({"seq": last, "hash": prev}))


def _drop_attacker_key_in_store(root: Path, attacker: Signer) -> None:
    """Put the attacker's public key wherever the store keeps keys, and a trust.json too."""
    keys = root / "keys"
    keys.mkdir(exist_ok=True)
    for pub in keys.glob("*.pub"):
        pub.write_bytes(attacker.public_pem())
    (keys / "signing.pub").write_bytes(attacker.public_pem())
    (keys / f"{attacker.key_id}.pub").write_bytes(attacker.public_pem())
    bogus = TrustPolicy(keys / "trust.json")
    bogus.pin(attacker.public_key_hex)


def _assert_refused_everywhere(
    root: Path, capsys: pytest.CaptureFixture[str], url: str | None = None, *, match: str
) -> None:
    db = ["--db-url", url] if url else []
    store = ["--store", str(root), *db]
    for command in (
        ["models", "show", "german@1"],
        ["models", "show", "german@latest"],
        ["audit", "--model", "german@1", "--checks", "performance"],
        ["serve", "german@1"],
    ):
        code, out, err = _cli(capsys, *command, *store)
        assert code == 5, (command, out, err)
        line = _one_line(err)
        assert line.startswith("error: german@"), line
        assert match in line, line
        assert "verified" not in out
    code, out, err = _cli(capsys, "models", "list", *store)
    assert code == 5
    assert "UNTRUSTED" in out
    assert "untrusted: german@1" in err
    lineage = LineageStore(root, url=url)
    with pytest.raises(UntrustedKeyError, match=match):
        ModelRegistry(lineage).load("german@1")
    from mlwarden.serve import Deployment, build_server

    with pytest.raises(UntrustedKeyError, match=match):
        build_server(lineage, Deployment.single("german@1"), serve_db=root / "s.db")
    lineage.close()


def test_the_private_key_is_nowhere_under_the_store(german_store: Path) -> None:
    from mlwarden.lineage import default_key_dir

    assert (default_key_dir() / "signing.key").exists()
    for path in german_store.rglob("*"):
        assert path.suffix != ".key", path
        if path.is_file() and path.stat().st_size < 10_000:
            assert b"PRIVATE KEY" not in path.read_bytes(), path
    assert [p.suffix for p in (german_store / "keys").iterdir()] == [".pub"]


def test_a_full_rewrite_with_the_attackers_own_key_is_refused(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = LineageStore(copy)
    attacker = _rewrite_with_own_key(store)
    records = list(store.iter_all())
    assert all(r.expected_hash() == r.hash for r in records)  # the attack left a sound chain
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(records))
    store.close()
    _assert_refused_everywhere(copy, capsys, match=f"key {attacker.key_id} is not pinned")
    # Dropping the attacker's public key (and a trust.json) into the store changes nothing.
    _drop_attacker_key_in_store(copy, attacker)
    _assert_refused_everywhere(copy, capsys, match=f"key {attacker.key_id} is not pinned")


def test_trust_given_on_the_command_line_decides(
    copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = LineageStore(copy)
    attacker = _rewrite_with_own_key(store)
    store.close()
    theirs = TrustPolicy(tmp_path / "attackers-friend.json")
    theirs.pin(attacker.public_key_hex)
    code, out, _ = _cli(
        capsys, "models", "show", "german@1", "--store", str(copy), "--trust", str(theirs.path)
    )
    assert code == 0  # whoever pins the attacker's key trusts the attacker: it is the user's call
    assert f"signed by pinned key {attacker.key_id}" in out
    empty = TrustPolicy(tmp_path / "empty.json")
    empty.save()
    code, _, err = _cli(
        capsys, "models", "show", "german@1", "--store", str(copy), "--trust", str(empty.path)
    )
    assert code == 5
    assert f"mlwarden signing trust {attacker.public_key_hex}" in _one_line(err)


def test_an_old_store_holding_its_private_key_is_refused_until_migrated(
    copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLWARDEN_KEY_DIR", str(tmp_path / "fresh-keys"))  # nothing pinned yet
    old = Signer.generate()
    (copy / "keys" / "signing.key").write_bytes(old.private_pem())
    (copy / "keys" / "signing.pub").write_bytes(old.public_pem())
    store = LineageStore(copy)
    record = store.records("model_version", subject="german")[-1]
    manifest = Manifest.model_validate(record.payload["manifest"])
    resigned = manifest.model_copy(update={"signer": old.public_key_hex})
    payload = {
        "manifest": resigned.model_dump(mode="json"),
        "signature": old.sign(resigned.message()),
    }
    _rechain(store, {record.seq: payload})  # as an old mlwarden signed it, with the in-store key
    key_file = copy / "keys" / "signing.key"
    migrate = f"mlwarden signing migrate --store {copy}"
    # Signing refuses: promotion, and a pipeline run that registers.
    code, _, err = _cli(
        capsys, "models", "promote", "german@1", "--stage", "prod", "--store", str(copy)
    )
    assert code == 5
    line = _one_line(err)
    assert str(key_file) in line and migrate in line
    result = LocalExecutor(store).run(parse_spec(FAST_SPEC.replace("name: german\n", "name: g2\n")))
    assert result.exit_code == 5 and result.model_version is None
    assert str(key_file) in (result.error or "") and migrate in (result.error or "")
    store.close()
    # Verifying refuses too, and names the migration.
    code, _, err = _cli(capsys, "models", "show", "german@1", "--store", str(copy))
    assert code == 5
    assert migrate in _one_line(err)
    assert not (tmp_path / "fresh-keys" / "signing.key").exists()
    # Migrate: the key leaves the store, is pinned, and what it signed verifies with a warning.
    code, out, _ = _cli(capsys, "signing", "migrate", "--store", str(copy))
    assert code == 0 and "rotate" in out
    assert not key_file.exists()
    assert (tmp_path / "fresh-keys" / "signing.key").exists()
    code, out, err = _cli(capsys, "models", "show", "german@1", "--store", str(copy))
    assert code == 0, err
    assert "verified" in out
    assert f"key {old.key_id} lay inside a store" in err
    code, _, _ = _cli(
        capsys, "models", "promote", "german@1", "--stage", "prod", "--store", str(copy)
    )
    assert code == 0


def test_an_unmigrated_store_whose_key_is_pinned_warns(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A user pinned the store's key by hand but left the private key in the store.
    planted = Signer.generate()
    (copy / "keys" / "signing.key").write_bytes(planted.private_pem())
    code, _, err = _cli(capsys, "models", "show", "german@1", "--store", str(copy))
    assert code == 0
    assert "this store still holds a private signing key" in err
    assert "mlwarden signing migrate" in err


def test_a_ci_key_from_the_environment_signs_and_writes_no_key_dir(
    copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ci = Signer.generate()
    key_dir = tmp_path / "untouched"
    monkeypatch.setenv("MLWARDEN_KEY_DIR", str(key_dir))
    monkeypatch.setenv("MLWARDEN_SIGNING_KEY", ci.private_pem().decode())
    store = LineageStore(copy)
    result = LocalExecutor(store).run(parse_spec(FAST_SPEC.replace("name: german\n", "name: ci\n")))
    assert result.model_version == "ci@1", result.error
    assert (
        ModelRegistry(store, TrustPolicy(tmp_path / "none.json")).versions()[-1].manifest.signer
        == ci.public_key_hex
    )
    store.close()
    assert not key_dir.exists()
    trust = tmp_path / "ci-trust.json"
    code, _, err = _cli(
        capsys, "models", "show", "ci@1", "--store", str(copy), "--trust", str(trust)
    )
    assert code == 5 and "does not exist" in _one_line(err)
    pub = tmp_path / "ci.pub"
    pub.write_bytes(ci.public_pem())
    code, out, _ = _cli(capsys, "signing", "trust", str(pub), "--trust", str(trust))
    assert code == 0 and f"pinned key {ci.key_id}" in out
    code, out, err = _cli(
        capsys, "models", "show", "ci@1", "--store", str(copy), "--trust", str(trust)
    )
    assert code == 0, err
    assert not key_dir.exists()


def test_a_rotated_key_is_trusted_through_the_stores_record(
    copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlwarden.lineage import default_key_dir

    session = Signer.load_or_create()
    mine = tmp_path / "my-keys"
    mine.mkdir(mode=0o700)
    shutil.copy(default_key_dir() / "signing.key", mine / "signing.key")
    monkeypatch.setenv("MLWARDEN_KEY_DIR", str(mine))
    verifier = TrustPolicy(tmp_path / "verifier.json")  # a colleague who pinned the old key only
    verifier.pin(session.public_key_hex)
    code, out, _ = _cli(capsys, "signing", "rotate", "--store", str(copy))
    assert code == 0, out
    new = Signer.load_or_create()
    assert new.public_key_hex != session.public_key_hex
    code, _, err = _cli(
        capsys, "models", "promote", "german@1", "--stage", "prod", "--store", str(copy),
        "--trust", str(verifier.path),
    )  # fmt: skip
    assert code == 0, err
    code, out, err = _cli(
        capsys, "models", "show", "german@prod", "--store", str(copy), "--trust", str(verifier.path)
    )
    assert code == 0, err  # signed by the new key, trusted along the rotation from the pinned one
    # An attacker who stole the OLD key cannot sign anything new with it after the rotation.
    store = LineageStore(copy)
    registry = ModelRegistry(store, verifier)
    registry.promote("german@1", "staging", session)
    with pytest.raises(UntrustedKeyError, match="rotated away by record"):
        registry.get("german@staging")
    store.close()


def test_signing_show_and_export_public(capsys: pytest.CaptureFixture[str]) -> None:
    signer = Signer.load_or_create()
    code, out, _ = _cli(capsys, "signing", "show")
    assert code == 0
    assert signer.key_id in out and "trust.json" in out
    code, out, _ = _cli(capsys, "signing", "export-public")
    assert code == 0
    assert out.encode() == signer.public_pem()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    from sqlalchemy.engine import make_url

    if PG_URL is None:
        pytest.skip("MLWARDEN_TEST_POSTGRES_URL is not set")
    name = f"mlwarden_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


def test_a_full_rewrite_is_refused_and_rotation_holds_on_postgres(
    tmp_path: Path,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlwarden.lineage import default_key_dir, store_policy

    store = LineageStore(tmp_path / "store", url=pg_url)
    assert LocalExecutor(store).run(parse_spec(FAST_SPEC)).model_version == "german@1"
    session = Signer.load_or_create()
    mine = tmp_path / "my-keys"
    mine.mkdir(mode=0o700)
    shutil.copy(default_key_dir() / "signing.key", mine / "signing.key")
    monkeypatch.setenv("MLWARDEN_KEY_DIR", str(mine))
    _, new = rotate_key(store)
    verifier = TrustPolicy(tmp_path / "verifier.json")
    verifier.pin(session.public_key_hex)
    policy = store_policy(store, verifier)
    assert policy.problems == [] and policy.is_trusted(new.public_key_hex)
    attacker = _rewrite_with_own_key(store)
    assert all(r.expected_hash() == r.hash for r in store.iter_all())
    store.close()
    _drop_attacker_key_in_store(tmp_path / "store", attacker)
    _assert_refused_everywhere(
        tmp_path / "store", capsys, pg_url, match=f"key {attacker.key_id} is not pinned"
    )


def test_signing_revoke_refuses_the_key_from_then_on(
    copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlwarden.lineage import default_key_dir

    mine = tmp_path / "my-keys"
    mine.mkdir(mode=0o700)
    for name in ("signing.key", "trust.json"):
        shutil.copy(default_key_dir() / name, mine / name)
    monkeypatch.setenv("MLWARDEN_KEY_DIR", str(mine))
    ci = Signer.generate()
    code, _, _ = _cli(capsys, "signing", "trust", ci.public_key_hex, "--note", "CI")
    assert code == 0
    monkeypatch.setenv("MLWARDEN_SIGNING_KEY", ci.private_pem().decode())
    store = LineageStore(copy)
    result = LocalExecutor(store).run(parse_spec(FAST_SPEC.replace("name: german\n", "name: ci\n")))
    assert result.model_version == "ci@1", result.error
    store.close()
    monkeypatch.delenv("MLWARDEN_SIGNING_KEY")
    assert _cli(capsys, "models", "show", "ci@1", "--store", str(copy))[0] == 0
    code, out, err = _cli(
        capsys, "signing", "revoke", ci.key_id, "--reason", "runner compromised",
        "--store", str(copy),
    )  # fmt: skip
    assert code == 0, err
    assert f"revoked {ci.key_id}" in out
    code, _, err = _cli(capsys, "models", "show", "ci@1", "--store", str(copy))
    assert code == 5
    assert "revoked by the trust policy" in _one_line(err)
    # A colleague whose policy pins the key but never revoked it: the store's record decides for
    # signatures after it; ci@1 was signed before, so it still verifies for them.
    colleague = TrustPolicy(tmp_path / "colleague.json")
    colleague.pin(ci.public_key_hex)
    colleague.pin(Signer.load_or_create().public_key_hex)
    store = LineageStore(copy)
    registry = ModelRegistry(store, colleague)
    registry.verify(registry.get("ci@1"))
    registry.promote("ci@1", "prod", ci)  # the stolen key signs after its revocation
    with pytest.raises(UntrustedKeyError, match="revoked by record"):
        registry.get("ci@prod")
    store.close()
    code, out, _ = _cli(capsys, "signing", "show")
    assert "revoked" in out


@pytest.mark.parametrize("where", ["key dir", "env", "env file"])
def test_a_corrupt_private_key_exits_5_in_one_line(
    copy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    bad = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----\n"
    key_dir = tmp_path / "keys"
    key_dir.mkdir(mode=0o700)
    monkeypatch.setenv("MLWARDEN_KEY_DIR", str(key_dir))
    if where == "key dir":
        (key_dir / "signing.key").write_text(bad)
        named = str(key_dir / "signing.key")
    elif where == "env":
        monkeypatch.setenv("MLWARDEN_SIGNING_KEY", bad)
        named = "$MLWARDEN_SIGNING_KEY"
    else:
        (tmp_path / "ci.pem").write_text(bad)
        monkeypatch.setenv("MLWARDEN_SIGNING_KEY_FILE", str(tmp_path / "ci.pem"))
        named = str(tmp_path / "ci.pem")
    code, _, err = _cli(capsys, "signing", "export-public")
    assert code == 5
    assert named in _one_line(err) and "is not a readable PEM ed25519 private key" in err
    code, _, err = _cli(
        capsys, "models", "promote", "german@1", "--stage", "prod", "--store", str(copy)
    )
    assert code == 5
    assert named in _one_line(err)
    assert not (copy / "keys" / "signing.key").exists()
