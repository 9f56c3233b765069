"""Signed checkpoints and witnesses against an attacker who can write the store.

The attacker edits the database with the append-only triggers switched off, rewrites ``HEAD``
and ``CHECKPOINT``, and in the strongest case holds the signing key. Each attack runs on SQLite
and, when ``MLWARDEN_TEST_POSTGRES_URL`` is set, on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from mlwarden.cli import main
from mlwarden.errors import IntegrityError, SignatureError
from mlwarden.lineage import (
    CheckpointSet,
    LineageStore,
    canonical_json,
    read_checkpoint_file,
    verify_store,
)
from mlwarden.models import Signer

PG_URL = os.environ.get("MLWARDEN_TEST_POSTGRES_URL")


class KeySigner:
    """A freshly generated ed25519 key: signs like ``mlwarden.models.Signer``."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()

    @property
    def public_key_hex(self) -> str:
        return self.key.public_key().public_bytes_raw().hex()

    def sign(self, message: bytes) -> str:
        return self.key.sign(message).hex()


class Trust:
    """Trusts exactly the given signers, as a trust policy of pinned keys does."""

    def __init__(self, *signers: KeySigner) -> None:
        self.keys = {s.public_key_hex: s.key.public_key() for s in signers}

    def check(
        self,
        signer_hex: str,
        message: bytes,
        signature_hex: str,
        *,
        what: str,
        at_seq: int | None = None,
    ) -> None:
        key = self.keys.get(signer_hex)
        if key is None:
            raise SignatureError(f"{what}: signer {signer_hex[:12]} is not trusted")
        try:
            key.verify(bytes.fromhex(signature_hex), message)
        except (InvalidSignature, ValueError) as exc:
            raise SignatureError(f"{what}: the signature does not verify") from exc


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for the embedded SQLite store; a fresh PostgreSQL database otherwise."""
    if request.param == "sqlite":
        yield None
        return
    if PG_URL is None:
        pytest.skip("MLWARDEN_TEST_POSTGRES_URL is not set")
    from sqlalchemy.engine import make_url

    name = f"mlwarden_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def key() -> KeySigner:
    return KeySigner()


_opened: list[LineageStore] = []


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    """Close every store a test opened, also when it failed (its database is dropped next)."""
    yield
    while _opened:
        _opened.pop().close()


def _store(root: Path, url: str | None) -> LineageStore:
    store = LineageStore(root, url=url)
    _opened.append(store)
    return store


def _events(store: LineageStore, n: int, tag: str = "e") -> None:
    for i in range(n):
        store.append("event", f"{tag}{i}", {"i": i, "tag": tag})


def _as_attacker(store: LineageStore, statement: str) -> None:
    """Run ``statement`` on the records table with its append-only triggers off."""
    engine = create_engine(store.url)
    with engine.begin() as conn:
        if store.sqlite:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS records_no_delete")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS records_no_update")
        else:
            conn.exec_driver_sql("ALTER TABLE records DISABLE TRIGGER records_append_only")
        conn.exec_driver_sql(statement)
        if not store.sqlite:
            conn.exec_driver_sql("ALTER TABLE records ENABLE TRIGGER records_append_only")
    engine.dispose()


def _truncate(store: LineageStore, keep: int) -> None:
    """Cut every record after ``keep`` and point HEAD at the new end, as an attacker would."""
    _as_attacker(store, f"DELETE FROM records WHERE seq > {keep}")
    last = store.records()[-1]
    store.head_path.write_bytes(json.dumps({"seq": last.seq, "hash": last.hash}).encode())


def test_a_checkpoint_is_a_signed_record_and_a_file(
    tmp_path: Path, url: str | None, key: KeySigner
) -> None:
    store = _store(tmp_path / "s", url)
    _events(store, 4)
    checkpoint = store.checkpoint(key)
    records = store.records()
    assert (checkpoint.seq, checkpoint.hash) == (4, records[3].hash)
    assert checkpoint.chain_id == records[0].hash
    assert records[-1].kind == "checkpoint" and records[-1].payload == checkpoint.to_json()
    assert read_checkpoint_file(store.checkpoint_path, "file").checkpoints == [checkpoint]
    assert store.newest_checkpoint() == checkpoint
    Trust(key).check(key.public_key_hex, checkpoint.message(), checkpoint.signature, what="cp")
    report = verify_store(store, trust=Trust(key))
    assert report.ok and report.summary().startswith("ok: 5 records"), report.summary()
    unsigned = verify_store(store)
    assert unsigned.ok and "checkpoint signatures not checked" in unsigned.summary()
    store.close()


def test_truncation_with_head_rewritten_is_caught_by_the_checkpoint(
    tmp_path: Path, url: str | None, key: KeySigner
) -> None:
    store = _store(tmp_path / "s", url)
    _events(store, 6)
    store.checkpoint(key)  # record 7 signs record 6
    _events(store, 2, "later")
    _truncate(store, 4)
    report = verify_store(store, trust=Trust(key))
    assert not report.ok
    assert "names lineage 6, but the chain ends at 4: records were cut off" in report.summary()
    store.close()


def test_every_cut_at_or_before_the_checkpoint_is_caught(tmp_path: Path, key: KeySigner) -> None:
    """The issue measured 0 of 20 truncations with a rewritten HEAD caught; now all are."""
    origin = _store(tmp_path / "origin", None)
    _events(origin, 20)
    origin.checkpoint(key)
    origin.close()
    caught = 0
    for keep in range(1, 21):
        root = Path(shutil.copytree(tmp_path / "origin", tmp_path / f"cut{keep}"))
        store = _store(root, None)
        _truncate(store, keep)
        caught += not verify_store(store, trust=Trust(key)).ok
        store.close()
    # Cutting only the checkpoint record itself (keep = 20) loses no checkpointed history.
    assert caught == 19


def test_rollback_to_an_older_genuine_checkpoint_is_caught_only_by_a_witness(
    tmp_path: Path, url: str | None, key: KeySigner
) -> None:
    store = _store(tmp_path / "s", url)
    _events(store, 3)
    store.checkpoint(key)  # record 4 signs 3
    older = store.checkpoint_path.read_bytes()
    _events(store, 3, "b")
    store.checkpoint(key)  # record 8 signs 7
    witness = tmp_path / "witness.json"
    shutil.copyfile(store.checkpoint_path, witness)
    _events(store, 2, "c")
    _truncate(store, 4)
    store.checkpoint_path.write_bytes(older)
    # Every check the store can make on itself passes: only the witness kept elsewhere knows.
    assert verify_store(store, trust=Trust(key)).ok
    report = verify_store(store, trust=Trust(key), witnesses=[witness])
    assert not report.ok
    assert [p.message for p in report.problems] == [
        f"witness {witness} names lineage 7, but the chain ends at 4: records were cut off the end"
    ]
    store.close()


def test_a_checkpoint_file_older_than_the_chain_s_newest_checkpoint_is_a_rollback(
    tmp_path: Path, url: str | None, key: KeySigner
) -> None:
    store = _store(tmp_path / "s", url)
    _events(store, 2)
    store.checkpoint(key)
    older = store.checkpoint_path.read_bytes()
    _events(store, 2, "b")
    store.checkpoint(key)
    store.checkpoint_path.write_bytes(older)
    report = verify_store(store, trust=Trust(key))
    assert "CHECKPOINT names lineage 2, older than the newest checkpoint in the chain " in (
        report.summary()
    )
    assert "rolled back" in report.summary()
    store.close()


def _rewrite_with_key(store: LineageStore, key: KeySigner, seq: int) -> None:
    """Rewrite the whole chain with one record changed (times kept), re-signing checkpoints."""
    original = store.records()
    _as_attacker(store, "DELETE FROM records")
    now = [original[0].created_at]
    forger = LineageStore(store.root, url=None if store.sqlite else store.url, clock=lambda: now[0])
    for record in original:
        now[0] = record.created_at
        if record.kind == "checkpoint":
            forger.checkpoint(key)
            continue
        payload = {**record.payload, "forged": True} if record.seq == seq else record.payload
        forger.append(record.kind, record.subject, payload, key=record.key)
    forger.close()


def test_a_full_rewrite_with_the_key_is_caught_by_a_witness(
    tmp_path: Path, url: str | None, key: KeySigner
) -> None:
    store = _store(tmp_path / "s", url)
    _events(store, 5)
    store.checkpoint(key)
    witness = tmp_path / "witness.json"
    shutil.copyfile(store.checkpoint_path, witness)
    _events(store, 3, "b")
    store.checkpoint(key)
    _rewrite_with_key(store, key, seq=3)
    assert verify_store(store, trust=Trust(key)).ok  # consistent, and signed by the real key
    report = verify_store(store, trust=Trust(key), witnesses=[witness])
    assert report.problems[0].message == (
        f"witness {witness} holds a different hash for lineage 5 than the chain: "
        "history up to it was rewritten"
    )
    store.close()


def test_a_forged_checkpoint_signature_is_a_signature_failure(
    tmp_path: Path, url: str | None, key: KeySigner
) -> None:
    store = _store(tmp_path / "s", url)
    _events(store, 4)
    store.checkpoint(key)
    _truncate(store, 2)
    store.checkpoint(KeySigner())  # the attacker's own key: the chain is consistent again
    unsigned = verify_store(store)
    assert unsigned.ok and "signatures not checked" in unsigned.summary()
    report = verify_store(store, trust=Trust(key))
    assert report.signature_failed, report.summary()
    assert "is not trusted" in report.problems[0].message
    store.close()


def test_a_tampered_signature_is_caught(tmp_path: Path, key: KeySigner) -> None:
    store = _store(tmp_path / "s", None)
    _events(store, 2)
    store.checkpoint(key)
    document = json.loads(store.checkpoint_path.read_bytes())
    signature = document["checkpoints"][0]["signature"]
    document["checkpoints"][0]["signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]
    store.checkpoint_path.write_bytes(canonical_json(document) + b"\n")
    report = verify_store(store, trust=Trust(key))
    assert report.signature_failed
    assert "the signature does not verify" in report.summary()
    store.close()


def test_a_checkpoint_record_that_does_not_match_the_chain_is_named(
    tmp_path: Path, key: KeySigner
) -> None:
    store = _store(tmp_path / "s", None)
    _events(store, 3)
    checkpoint = store.checkpoint(key)
    forged = {**checkpoint.to_json(), "hash": "f" * 64}
    store.append("checkpoint", checkpoint.chain_id, forged, key="3")
    report = verify_store(store)
    assert any(
        p.seq == 5 and "checkpoint record 5 holds a different hash for lineage 3" in p.message
        for p in report.problems
    ), report.problems
    store.close()


def test_an_empty_store_has_nothing_to_sign(tmp_path: Path, key: KeySigner) -> None:
    store = _store(tmp_path / "s", None)
    with pytest.raises(Exception, match="holds no records yet"):
        store.checkpoint(key)
    assert store.records() == [] and not store.checkpoint_path.exists()
    store.close()


# -- the CLI: one line, exit 0 / 4 / 5 -------------------------------------------------------


@pytest.fixture
def signed_store(tmp_path: Path) -> Path:
    """A store checkpointed with this machine's key (the key dir, pinned in its trust.json)."""
    root = tmp_path / "store"
    store = LineageStore(root)
    _events(store, 4)
    store.checkpoint(Signer.load_or_create())
    store.close()
    return root


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_a_checkpoint_by_a_key_the_trust_policy_does_not_pin_exits_5(
    tmp_path: Path, key: KeySigner, capsys: pytest.CaptureFixture[str]
) -> None:
    """The store writer's own key, planted in the store, does not make its checkpoint trusted."""
    root = tmp_path / "store"
    store = LineageStore(root)
    _events(store, 2)
    store.checkpoint(key)
    store.close()
    (root / "keys").mkdir()
    (root / "keys" / "signing.pub").write_bytes(
        key.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    code, _, err = _cli(capsys, "lineage", "verify", "--store", str(root))
    first, *also = err.strip().splitlines()
    assert code == 5 and "is not pinned in the trust policy" in first
    assert all(line.startswith("  also: ") for line in also)


def test_export_then_verify_with_the_witness(
    signed_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    witness = tmp_path / "w.json"
    code, out, _ = _cli(
        capsys, "lineage", "checkpoint", "--store", str(signed_store), "--export", str(witness)
    )
    assert code == 0 and "checkpoint of record 4" in out
    assert isinstance(read_checkpoint_file(witness, "witness"), CheckpointSet)
    store = LineageStore(signed_store)
    _events(store, 2, "more")
    store.close()
    code, out, _ = _cli(
        capsys,
        "lineage",
        "verify",
        "--store",
        str(signed_store),
        "--witness",
        str(witness),
        "--witness",
        str(witness),
    )
    assert code == 0 and out.splitlines() == [
        "ok: 7 records, 0 artifacts",
        "consistent with 2 witness(es)",
    ]


def test_a_rewrite_caught_by_a_witness_exits_4(
    signed_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    witness = tmp_path / "w.json"
    assert (
        main(["lineage", "checkpoint", "--store", str(signed_store), "--export", str(witness)]) == 0
    )
    store = LineageStore(signed_store)
    _truncate(store, 2)
    store.checkpoint_path.unlink()
    store.close()
    code, _, err = _cli(capsys, "lineage", "verify", "--store", str(signed_store))
    assert code == 0  # nothing left in the store to compare against
    code, _, err = _cli(
        capsys, "lineage", "verify", "--store", str(signed_store), "--witness", str(witness)
    )
    assert code == 4
    assert err.strip() == (
        f"FAILED: witness {witness} names lineage 4, but the chain ends at 2: "
        "records were cut off the end"
    )


def test_a_forged_signature_exits_5(signed_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = LineageStore(signed_store)
    _truncate(store, 2)
    store.checkpoint(KeySigner())
    store.close()
    code, _, err = _cli(capsys, "lineage", "verify", "--store", str(signed_store))
    assert code == 5 and "is not pinned in the trust policy" in err


def test_a_witness_of_another_store_is_refused_with_one_line(
    signed_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = LineageStore(tmp_path / "other")
    _events(other, 3, "other")
    other.checkpoint(Signer.load_or_create())
    other.close()
    code, _, err = _cli(
        capsys,
        "lineage",
        "verify",
        "--store",
        str(signed_store),
        "--witness",
        str(other.checkpoint_path),
    )
    assert code == 4
    line = err.strip()
    assert "\n" not in line and "it is another store's" in line


@pytest.mark.parametrize("damage", [b"\xff\xfe", b"{}", b'{"checkpoints": [{"seq": 1}]}', b""])
def test_corrupted_checkpoint_bytes_are_a_clean_refusal(
    signed_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: bytes
) -> None:
    (signed_store / "CHECKPOINT").write_bytes(damage)
    code, _, err = _cli(capsys, "lineage", "verify", "--store", str(signed_store))
    assert code == 4 and err.startswith("FAILED: checkpoint file") and len(err.splitlines()) == 1
    witness = tmp_path / "w.json"
    witness.write_bytes(damage)
    code, _, err = _cli(
        capsys, "lineage", "verify", "--store", str(signed_store), "--witness", str(witness)
    )
    assert code == 4 and err.startswith("error: witness") and len(err.splitlines()) == 1


def test_export_refuses_a_store_that_fails_verify(
    signed_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = LineageStore(signed_store)
    _truncate(store, 2)
    store.close()
    code, _, err = _cli(
        capsys,
        "lineage",
        "checkpoint",
        "--store",
        str(signed_store),
        "--export",
        str(tmp_path / "w.json"),
    )
    assert (
        code == 4 and err.startswith("not exported: FAILED") and not (tmp_path / "w.json").exists()
    )


def test_a_witness_file_must_exist(signed_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(IntegrityError, match="cannot be read"):
        verify_store(LineageStore(signed_store), witnesses=[signed_store / "nope.json"])


def test_a_completed_run_ends_with_a_signed_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlwarden.pipeline import LocalExecutor, parse_spec
    from tests.conftest import FAST_SPEC

    store = _store(tmp_path / "store", None)
    result = LocalExecutor(store).run(parse_spec(FAST_SPEC))
    assert result.status == "completed"
    *_, ended, last = store.records()
    assert ended.kind == "run_ended" and last.kind == "checkpoint"
    checkpoint = store.newest_checkpoint()
    assert checkpoint is not None and (checkpoint.seq, checkpoint.hash) == (ended.seq, ended.hash)
    assert checkpoint.signer == Signer.load_or_create().public_key_hex
    code, out, _ = _cli(capsys, "lineage", "verify", "--store", str(store.root))
    assert code == 0 and out.startswith("ok: ") and "not checked" not in out


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, KeySigner]:
    """A small store with a checkpoint, and the key that signed it."""
    root = tmp_path_factory.mktemp("checkpointed") / "store"
    key = KeySigner()
    store = LineageStore(root)
    _events(store, 3)
    store.checkpoint(key)
    store.close()
    return root, key


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_single_changed_checkpoint_byte_fails_verify(
    checkpointed: tuple[Path, KeySigner], tmp_path: Path, data: st.DataObject
) -> None:
    origin, key = checkpointed
    root = Path(shutil.copytree(origin, tmp_path / uuid.uuid4().hex))
    content = (root / "CHECKPOINT").read_bytes()
    changed = bytearray(content)
    changed[data.draw(st.integers(0, len(content) - 1))] ^= data.draw(st.integers(1, 255))
    (root / "CHECKPOINT").write_bytes(bytes(changed))
    store = LineageStore(root)
    assert not verify_store(store, trust=Trust(key)).ok
    store.close()


# -- key rotation: trust follows the chain, judged where each checkpoint was signed ------------


def test_a_witness_signed_before_a_rotation_still_proves_history_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verifier elsewhere pins only the first key; rotation records carry trust to the next."""
    from mlwarden.lineage import TrustPolicy, rotate_key, store_policy, write_checkpoint_file

    key_dir = tmp_path / "signer-keys"
    monkeypatch.setenv("MLWARDEN_KEY_DIR", str(key_dir))
    store = _store(tmp_path / "s", None)
    old = Signer.load_or_create()
    _events(store, 3)
    witness = tmp_path / "witness.json"
    write_checkpoint_file(witness, [store.checkpoint(old)])
    rotate_key(store)
    _events(store, 2, tag="after")
    store.checkpoint(Signer.load_or_create())

    verifier = TrustPolicy(tmp_path / "verifier-trust.json")
    verifier.pin(old.public_key_hex)
    report = verify_store(store, trust=store_policy(store, verifier), witnesses=[witness])
    assert report.ok, report.summary()

    # The retired key, stolen, cannot vouch for anything after its rotation.
    store.checkpoint(old)
    report = verify_store(store, trust=store_policy(store, verifier))
    assert not report.ok and report.signature_failed
    assert "rotated" in report.summary()
    store.close()


def test_the_signing_machine_catches_a_rollback_without_an_exported_witness(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The key dir keeps the newest checkpoint signed here; `lineage verify` always checks it."""
    from mlwarden.lineage import TrustPolicy, local_witness_path, remember_checkpoint, store_policy

    signer = Signer.load_or_create()
    store = _store(tmp_path / "s", None)
    _events(store, 3)
    remember_checkpoint(store, store.checkpoint(signer), signer)
    older = store.checkpoint_path.read_bytes()
    _events(store, 3, "b")
    remember_checkpoint(store, store.checkpoint(signer), signer)
    local = local_witness_path(store)
    code, out, _ = _cli(capsys, "lineage", "verify", "--store", str(store.root))
    assert code == 0 and f"consistent with the checkpoint this machine signed last ({local})" in out

    _truncate(store, 4)  # back to the first checkpoint, and its genuine CHECKPOINT file restored
    store.checkpoint_path.write_bytes(older)
    alone = verify_store(store, trust=store_policy(store, TrustPolicy.load()))
    assert alone.ok  # the store alone cannot tell
    code, _, err = _cli(capsys, "lineage", "verify", "--store", str(store.root))
    assert code == 4
    assert f"witness {local} names lineage 7, but the chain ends at 4" in err
    store.close()


def test_a_key_from_the_environment_keeps_no_witness_in_the_key_dir(
    tmp_path: Path, key: KeySigner
) -> None:
    from mlwarden.lineage import local_witness_path, remember_checkpoint

    pem = key.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    env_signer = Signer.from_pem(pem, source="$MLWARDEN_SIGNING_KEY")
    store = _store(tmp_path / "s", None)
    _events(store, 2)
    assert remember_checkpoint(store, store.checkpoint(env_signer), env_signer) is None
    assert not local_witness_path(store).exists()
    store.close()
