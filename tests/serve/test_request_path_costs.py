"""The cheap paths of the guarded request path do what the plain ones did (issue 16).

No timings here: each test pins that a shortcut gives the same result as the general path it
replaces, so making the request path cheaper never changes what is answered, logged or judged.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlwarden.data import (
    ColumnSchema,
    ColumnThresholds,
    DriftReference,
    DriftThresholds,
    TableSchema,
    drift_report,
)
from mlwarden.errors import DataError
from mlwarden.serve._decision_records import stored_body
from mlwarden.serve._decisions import (
    DecisionLog,
    DecisionRecord,
    DecisionWriteError,
    PendingDecision,
    ShadowResult,
    chain_hash,
)
from mlwarden.serve._extraction import (
    BenignTraffic,
    FeatureSpace,
    OffManifoldDetector,
    PradaDetector,
    RarityDetector,
    shapiro_w,
)
from mlwarden.serve._runtime import ServedModel
from mlwarden.serve._schema import RequestRows, request_model

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


# -- the rows' matrix ----------------------------------------------------------------------------


def _schema(types: dict[str, str], nullable: bool = False) -> TableSchema:
    columns = {name: ColumnSchema(type=t, nullable=nullable) for name, t in types.items()}  # type: ignore[arg-type]
    return TableSchema(columns={**columns, "y": ColumnSchema(type="integer")}, label="y")


def _batch(schema: TableSchema, rows: list[dict[str, Any]]) -> RequestRows:
    body = request_model(schema, 100).model_validate({"rows": rows})
    return RequestRows.of(body, schema.features)


def _per_column(batch: RequestRows) -> pd.DataFrame:
    return pd.DataFrame(batch.rows, columns=batch.columns)  # the table as it was always built


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(["integer", "float"]),
    width=st.integers(1, 6),
    data=st.data(),
)
def test_the_matrix_table_equals_the_per_column_table(kind: str, width: int, data: Any) -> None:
    schema = _schema({f"c{j}": kind for j in range(width)})
    value = (
        st.integers(-(2**53), 2**53)
        if kind == "integer"
        else st.floats(allow_nan=False, allow_infinity=False) | st.integers(-1000, 1000)
    )
    rows = data.draw(
        st.lists(st.fixed_dictionaries({f"c{j}": value for j in range(width)}), min_size=1)
    )
    batch = _batch(schema, rows)
    assert batch.matrix is not None
    pd.testing.assert_frame_equal(batch.frame, _per_column(batch))
    assert list(batch.frame.dtypes) == list(_per_column(batch).dtypes)


@pytest.mark.parametrize(
    ("types", "nullable", "rows", "matrix"),
    [
        ({"a": "integer", "b": "integer"}, False, [{"a": 1, "b": -1}, {"a": 0, "b": 2.0}], True),
        ({"a": "integer", "b": "float"}, False, [{"a": 1, "b": 0.5}], False),  # mixed: per column
        ({"a": "integer", "b": "boolean"}, False, [{"a": 1, "b": True}], False),
        ({"a": "integer", "b": "integer"}, True, [{"a": 1, "b": None}, {"a": 2, "b": 3}], False),
        ({"a": "float", "b": "float"}, True, [{"a": None, "b": None}], False),  # all missing
        ({"a": "float", "b": "float"}, True, [{"a": 1.5, "b": 2}], True),
    ],
)
def test_a_table_is_built_column_by_column_unless_one_matrix_holds_it_exactly(
    types: dict[str, str], nullable: bool, rows: list[dict[str, Any]], matrix: bool
) -> None:
    batch = _batch(_schema(types, nullable), rows)
    assert (batch.matrix is not None) is matrix
    pd.testing.assert_frame_equal(batch.frame, _per_column(batch))
    if matrix:
        reordered = batch.matrix_in(list(reversed(batch.columns)))
        assert reordered is not None
        np.testing.assert_array_equal(reordered, _per_column(batch)[batch.columns[::-1]].to_numpy())


def _served(adapter: Any) -> ServedModel:
    return ServedModel("m@1", cast(Any, None), adapter, None)


def test_a_matrix_model_given_the_matrix_answers_as_given_the_table() -> None:
    pytest.importorskip("skl2onnx")
    pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    from mlwarden.models import OnnxAdapter, TorchAdapter

    rng = np.random.default_rng(0)
    schema = _schema({f"c{j}": "integer" for j in range(5)})
    fitted = list(reversed(schema.features))  # the models read another order than the schema's
    X = rng.integers(-1, 2, size=(200, 5))
    y = (X @ np.arange(1, 6) > 0).astype(int)
    onnx = OnnxAdapter(
        bytes(
            to_onnx(LogisticRegression().fit(X, y), X[:1].astype(np.float32)).SerializeToString()
        ),
        feature_names=fitted,
    )
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(5, 2))
    torched = TorchAdapter(module, [0, 1], feature_names=fitted)
    rows = [dict(zip(schema.features, map(int, x), strict=True)) for x in X[:20]]
    for adapter in (onnx, torched):
        model = _served(adapter)
        order = model.matrix_order(schema.features)
        assert order == fitted
        batch = _batch(schema, rows)
        matrix = batch.matrix_in(order)
        assert matrix is not None
        np.testing.assert_array_equal(
            adapter.predict_proba(matrix), model.predict_proba(_per_column(batch))
        )
    # scikit-learn models, early-exit networks and imputing models are given the table
    from mlwarden.models import SklearnAdapter

    assert (
        _served(SklearnAdapter(LogisticRegression().fit(X, y))).matrix_order(schema.features)
        is None
    )


# -- the extraction detectors -------------------------------------------------------------------


def _loop_surprise(detector: RarityDetector, X: np.ndarray) -> np.ndarray:
    """The rarity detector's surprise column by column, as it was computed before."""
    binned = detector._binned
    detector._binned = None
    try:
        return detector.surprise(X)
    finally:
        detector._binned = binned


def _mixed_space() -> tuple[FeatureSpace, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    n = 600
    frame = pd.DataFrame(
        {
            "grid": rng.integers(-1, 2, n),  # few levels: binned by exact value
            "amount": rng.lognormal(3, 1, n),  # continuous: equal-width bins and two tails
            "flat": np.full(n, 2.0),  # no spread
            "colour": rng.choice(["red", "green", "blue"], n),
            "size": rng.choice(["s", "m", "l", "xl"], n, p=[0.4, 0.3, 0.2, 0.1]),
        }
    )
    space = FeatureSpace.fit(frame)
    encoded = space.transform(frame)
    return space, encoded[:300], encoded[300:]


def test_the_binned_rarity_surprise_is_the_column_by_column_one() -> None:
    space, train, held_out = _mixed_space()
    detector = RarityDetector().fit(
        BenignTraffic(space, train, held_out, np.full((len(held_out), 2), 0.5))
    )
    assert detector._binned is not None
    rng = np.random.default_rng(4)
    odd = rng.normal(0, 3, (200, space.n_features))
    odd[::7, 0] = np.nan
    odd[1::7, 1] = np.inf
    odd[2::7, 1] = -np.inf
    odd[3::7, 3:6] = 0.0  # no category: the unknown bucket
    odd[4::7, 3:6] = np.nan
    for X in (held_out, odd, held_out[:1], held_out[:0], np.vstack([held_out] * 5)):
        np.testing.assert_array_equal(detector.surprise(X), _loop_surprise(detector, X))


def _prada_reference_w(distances: np.ndarray) -> float:
    """PRADA's W as it was computed before: D sorted again on every query."""
    mean, std = float(distances.mean()), float(distances.std())
    kept = distances[np.abs(distances - mean) <= 3.0 * std] if std > 0 else distances
    return shapiro_w(kept) if len(kept) >= 6 else 1.0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), levels=st.sampled_from([2, 3, 50]))
def test_the_sorted_prada_distances_equal_a_fresh_sort(seed: int, levels: int) -> None:
    # discrete rows (few levels) make many distances tie; the ring overwrites its oldest ones
    rng = np.random.default_rng(seed)
    detector = PradaDetector(min_distances=6, max_distances=40, max_per_class=16)
    for _ in range(150):
        x = rng.integers(0, levels, 4).astype(np.float64)
        verdict = detector.observe("c", x, int(rng.integers(0, 3)))
        state = detector._clients.peek("c")
        assert state is not None
        n = state.d_count
        np.testing.assert_array_equal(state.sorted[:n], np.sort(state.distances[:n]))
        if n >= 6:
            assert verdict.statistic == _prada_reference_w(state.distances[:n])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 6))
def test_the_off_manifold_flag_without_the_kth_distance_is_the_flag_with_it(
    seed: int, k: int
) -> None:
    rng = np.random.default_rng(seed)
    space, train, held_out = _mixed_space()
    detector = OffManifoldDetector(k=k, max_reference=200, seed=seed % 1000).fit(
        BenignTraffic(space, train, held_out, np.full((len(held_out), 2), 0.5))
    )
    X = np.vstack([held_out[:50], rng.normal(0, 2, (50, space.n_features)), train[:20]])
    assert detector.radius_ is not None
    np.testing.assert_array_equal(detector.beyond(X), detector.distances(X) > detector.radius_)
    # a radius equal to a row's own k-th distance: that row is within it, the flag says so
    for radius in (*detector.distances(X[:5]), 0.0, float(np.nextafter(0.0, 1.0))):
        detector.radius_ = float(radius)
        np.testing.assert_array_equal(detector.beyond(X), detector.distances(X) > radius)


# -- the drift monitor ---------------------------------------------------------------------------


def _drift_tables(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def table(n: int, shift: float) -> pd.DataFrame:
        amount = rng.lognormal(3 + shift, 1, n)
        amount[rng.random(n) < 0.1] = np.nan
        return pd.DataFrame(
            {
                "grid": rng.integers(-1, 2, n),
                "amount": amount,
                "flat": np.full(n, 2.0),
                "colour": rng.choice(["red", "green", "blue", None], n),
                "flag": rng.random(n) < 0.3 + shift / 4,
            }
        )

    return table(3000, 0.0), table(400, float(rng.choice([0.0, 0.5])))


@pytest.mark.parametrize("seed", range(4))
def test_the_prepared_drift_reference_reports_what_drift_report_does(seed: int) -> None:
    from scipy.stats import ks_2samp

    reference, current = _drift_tables(seed)
    thresholds = DriftThresholds(columns={"grid": ColumnThresholds(psi=0.01)})
    prepared = DriftReference(reference, thresholds, categorical=["flag"])
    expected = drift_report(reference, current, thresholds, categorical=["flag"])
    assert prepared.compare(current) == expected
    assert prepared.compare(current.iloc[::2]) == drift_report(
        reference, current.iloc[::2], thresholds, categorical=["flag"]
    )
    amount = next(c for c in expected.columns if c.column == "amount")
    public = ks_2samp(reference["amount"].dropna(), current["amount"].dropna())
    assert (amount.ks_statistic, amount.ks_pvalue) == (public.statistic, public.pvalue)


def test_the_prepared_drift_reference_raises_what_drift_report_raises() -> None:
    reference, current = _drift_tables(0)
    reference = reference.assign(empty=np.nan)
    for batch in (current.drop(columns="grid"), current.assign(empty=1.0)):
        with pytest.raises(DataError) as expected:
            drift_report(reference, batch)
        with pytest.raises(DataError) as got:
            DriftReference(reference).compare(batch)
        assert str(got.value) == str(expected.value)
    with pytest.raises(DataError, match="not in the reference table"):
        DriftReference(reference, columns=["nope"])


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(["integer", "float"]), data=st.data())
def test_the_detectors_vectors_from_the_matrix_equal_those_from_the_rows(
    kind: str, data: Any
) -> None:
    schema = _schema({f"c{j}": kind for j in range(4)})
    reference = pd.DataFrame(
        np.random.default_rng(0).integers(-3, 4, (50, 4)), columns=schema.features
    )
    space = FeatureSpace.fit(reference, schema)
    value = (
        st.integers(-(2**53), 2**53)
        if kind == "integer"
        else st.floats(allow_nan=False, allow_infinity=False, width=64)
    )
    rows = data.draw(
        st.lists(st.fixed_dictionaries({c: value for c in schema.features}), min_size=1)
    )
    batch = _batch(schema, rows)
    assert batch.matrix is not None
    np.testing.assert_array_equal(batch.vectors(space), space.transform(batch.rows))
