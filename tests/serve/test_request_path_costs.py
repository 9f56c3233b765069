"""The cheap paths of the guarded request path do what the plain ones did (issue 16).

No timings here: each test pins that a shortcut gives the same result as the general path it
replaces, so making the request path cheaper never changes what is answered, logged or judged.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from mlwarden.serve._decision_records import stored_body
from mlwarden.serve._decisions import (
    DecisionLog,
    DecisionRecord,
    DecisionWriteError,
    PendingDecision,
    ShadowResult,
    chain_hash,
)

SHA = "a" * 64
HEAD = "b" * 64


def _values(i: int = 0, **extra: Any) -> dict[str, Any]:
    """What the request thread holds for one decision, as plain values."""
    values: dict[str, Any] = {
        "request_id": uuid.uuid4().hex,
        "client": "0123456789abcdef",
        "model_ref": "phishing@1",
        "model_sha256": SHA,
        "lineage_head": HEAD,
        "input": [{"having_IP_Address": -1, "URL_Length": 1, "ratio": 0.1 * i, "note": None}],
        "output": [{"label": "phishing", "probabilities": {"legitimate": 0.25, "phishing": 0.75}}],
        "guards": {"extraction": {"alarm": False, "action": None, "verdict": {"n": i}}},
        "fail_open": ["drift"] if i % 2 else [],
        "shadow": [ShadowResult(model_ref="phishing@2", output={"labels": ["phishing"]})],
        "latency_ms": 1.5 + i,
    }
    values.update(extra)
    return values


def _old_record(pending: PendingDecision) -> DecisionRecord:
    """The record as the request thread built it before decisions were queued as values."""
    return DecisionRecord(
        request_id=pending.request_id,
        created_at=pending.created_at,
        client=pending.client,
        model_ref=pending.model_ref,
        model_sha256=pending.model_sha256,
        lineage_head=pending.lineage_head,
        input=pending.input,
        output=pending.output,
        guards=pending.guards,
        fail_open={guard: True for guard in pending.fail_open},
        shadow=pending.shadow,
        latency_ms=pending.latency_ms,
    )


def test_the_writer_built_record_is_the_one_the_request_thread_built(tmp_path: Path) -> None:
    pending = [PendingDecision(**_values(i)) for i in range(4)]
    old = [_old_record(p) for p in pending]
    assert [p.record() for p in pending] == old
    log = DecisionLog(tmp_path / "serve.db")
    for p in pending:
        assert log.append(p)
    log.flush()
    stored = sqlite3.connect(tmp_path / "serve.db").execute(
        "SELECT seq, body, prev_hash, hash FROM decisions ORDER BY seq"
    )
    prev = "0" * 64
    for (seq, body, prev_hash, digest), record in zip(stored, old, strict=True):
        _, expected = stored_body(record, exclude={"feedback"})
        assert body.encode("utf-8") == expected  # the same bytes as before, hashed the same
        assert prev_hash == prev
        assert digest == chain_hash("decisions", 1, seq, expected, prev)
        prev = digest
    assert [log.get(r.request_id) for r in old] == old
    assert log.verify().ok
    log.close()


def test_a_pending_decision_that_does_not_validate_is_counted_not_lost_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = DecisionLog(tmp_path / "serve.db")
    caplog.set_level(logging.ERROR)
    bad = PendingDecision(**_values(1, model_ref="no-version"))
    good = PendingDecision(**_values(2))
    assert log.append(bad) and log.append(good)
    with pytest.raises(DecisionWriteError, match="1 decision could not be stored"):
        log.flush()
    assert bad.request_id in caplog.text
    assert log.get(good.request_id) is not None and log.head()[0] == 1
    log.close()


def test_a_duplicate_id_in_an_unchecked_batch_is_left_out_and_the_rest_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # No lookup before the insert: the unique constraint refuses the batch, which is then
    # written again with its ids checked; only the duplicates are left out (and counted).
    log = DecisionLog(tmp_path / "serve.db", linger_s=0.2)
    first = PendingDecision(**_values(0))
    assert log.append(first)
    log.flush()
    caplog.set_level(logging.ERROR)
    again = PendingDecision(**_values(1, request_id=first.request_id))
    fresh = [PendingDecision(**_values(i)) for i in range(2, 5)]
    twice = PendingDecision(**_values(5))
    for pending in (fresh[0], again, fresh[1], twice, twice, fresh[2]):
        assert log.append(pending)
    with pytest.raises(DecisionWriteError, match="2 decisions could not be stored"):
        log.flush()
    assert caplog.text.count("duplicate id") == 2
    assert log.head()[0] == 5
    recent = [r.request_id for r in reversed(list(log.iter_recent(5)))]
    assert recent == [
        first.request_id,
        fresh[0].request_id,
        fresh[1].request_id,
        twice.request_id,
        fresh[2].request_id,
    ]
    assert log.get(first.request_id) == first.record()  # the original stays
    assert log.verify().ok
    log.close()
