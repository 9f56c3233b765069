"""``/v1/explain``: SHAP values behind their own role and budget, counted by the guards.

The served model (phish@1) is a logistic regression on 23 standardised columns, so its linear
SHAP values are ``c_i * (x_i - m_i)`` with ``c_i = w_i / s_i``: two explanations whose rows
differ in a column reveal that column's ``c_i`` and ``m_i`` exactly (Milli et al. 2019,
"Model reconstruction from model explanations").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlwarden.serve import reproduce_decision
from tests.serve.test_app import rows


def _explain(s: Any, batch: list[dict[str, Any]], key: str | None = None) -> Any:
    token = key or s.keys["explain"]
    return s.client.post(
        "/v1/explain", json={"rows": batch}, headers={"Authorization": f"Bearer {token}"}
    )


@pytest.fixture
def server(serve: Any) -> Any:
    s = serve()
    s.keys["explain"] = s.g.keys.create("explain", "explain-key")
    return s


def test_explanations_need_the_explain_role_and_add_up_to_the_log_odds(
    server: Any, phishing_rows: pd.DataFrame
) -> None:
    s, batch = server, rows(phishing_rows, 3)
    assert _explain(s, batch, key=s.keys["predict"]).status_code == 403
    assert _explain(s, batch, key=s.keys["admin"]).status_code == 200  # admin may do all
    answer = _explain(s, batch)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["method"], body["output"], body["model"]) == ("linear", "log-odds", "phish@1")
    predicted = s.predict(batch).json()["predictions"]
    for explained, p in zip(body["explanations"], predicted, strict=True):
        assert explained["label"] == p["label"] and len(explained["values"]) == 23
        q = p["probabilities"][body["explained_class"]]
        total = body["base_value"] + sum(explained["values"].values())
        assert total == pytest.approx(np.log(q / (1 - q)), abs=1e-6)


def test_an_explained_row_costs_one_rate_limit_row_per_column_plus_one(
    server: Any, phishing_rows: pd.DataFrame
) -> None:
    s = server  # burst 200, 23 columns: 24 rows of the rate limit per explained row
    too_many = _explain(s, rows(phishing_rows, 9))
    assert too_many.status_code == 413 and "at most 8 rows" in too_many.json()["detail"]
    assert _explain(s, rows(phishing_rows, 8)).status_code == 200  # 192 of 200 spent
    limited = s.predict(rows(phishing_rows, 9), key=s.keys["admin"])
    assert limited.status_code == 200  # another key's bucket is untouched
    assert _explain(s, rows(phishing_rows, 1)).status_code == 429  # 8 left, 24 needed


def test_going_past_the_budget_is_an_extraction_alarm(
    serve: Any, phishing_rows: pd.DataFrame
) -> None:
    s = serve(guards={"explain": {"max_explanations": 2}, "extraction": {"action": "log"}})
    key = s.g.keys.create("explain", "e")
    assert _explain(s, rows(phishing_rows, 2), key=key).status_code == 200
    s.clock.now += 1
    over = _explain(s, rows(phishing_rows, 1, start=2), key=key)
    assert over.status_code == 429 and "explanation budget: 2 per 3600 s" in over.json()["detail"]
    s.g.decisions.flush()
    s.clock.now += 3600  # the window moved on
    assert _explain(s, rows(phishing_rows, 1, start=3), key=key).status_code == 200


def _reconstruct(seen: list[tuple[dict[str, Any], dict[str, float]]]) -> dict[str, tuple]:
    """Each column's (c, m) from two explanations whose rows differ there."""
    solved: dict[str, tuple[float, float]] = {}
    for column in seen[0][1]:
        pairs = {row[column]: values[column] for row, values in seen}
        if len(pairs) >= 2:
            (x1, p1), (x2, p2) = list(pairs.items())[:2]
            c = (p1 - p2) / (x1 - x2)
            solved[column] = (c, x1 - p1 / c)
    return solved


def test_a_thief_rebuilding_the_model_from_explanations_is_blocked_before_it_is_done(
    server: Any, phishing_rows: pd.DataFrame
) -> None:
    s = server  # default budget: 20 explanations per hour
    natural = rows(phishing_rows, 300)
    # With these natural rows the thief needs 73 explanations to see every column take two
    # values (some columns rarely vary): its reconstruction cannot be complete before that.
    needed = next(
        n for n in range(2, 301) if all(len({r[c] for r in natural[:n]}) >= 2 for c in natural[0])
    )
    assert needed > s.g.deployment.guards.explain.max_explanations
    seen: list[tuple[dict[str, Any], dict[str, float]]] = []
    refused = None
    for row in natural:
        s.g.decisions.flush()  # the second passes for the log's writer too
        s.clock.now += 1  # slow enough for the rate limit: only the budget can stop it
        answer = _explain(s, [row])
        if answer.status_code != 200:
            refused = answer
            break
        seen.append((row, answer.json()["explanations"][0]["values"]))
    assert refused is not None and refused.status_code == 403
    assert "explanation budget" in refused.json()["detail"] and len(seen) == 20
    assert s.predict(rows(phishing_rows, 1), key=s.keys["explain"]).status_code == 403
    assert s.g.metrics.guard_alarms.labels(guard="extraction")._value.get() >= 1
    # what it took away is exact where it got that far, and incomplete
    solved = _reconstruct(seen)
    model = s.g.routes[0].adapter.estimator
    numeric = model.named_steps["prepare"].named_transformers_["numeric"]
    weights = model.steps[-1][1].coef_[0] / numeric.named_steps["scale"].scale_
    columns = list(numeric.feature_names_in_)  # the pipeline's own column order
    for column, (c, _) in solved.items():
        assert c == pytest.approx(weights[columns.index(column)], rel=1e-6)
    assert 0 < len(solved) < len(columns)


def test_a_benign_client_asking_a_few_explanations_is_not_flagged(
    server: Any, phishing_rows: pd.DataFrame
) -> None:
    s = server
    for i in range(3):
        s.g.decisions.flush()  # the 5 s pass for the log's writer too
        s.clock.now += 5
        answer = _explain(s, rows(phishing_rows, 1, start=400 + i))
        assert answer.status_code == 200 and "X-Mlwarden-Alarm" not in answer.headers
    assert not s.g.blocked and not s.g.throttled
    assert s.g.metrics.guard_alarms.labels(guard="extraction")._value.get() == 0


def test_an_explanation_is_a_logged_decision_holding_what_the_client_was_shown(
    server: Any, phishing_rows: pd.DataFrame
) -> None:
    s, batch = server, rows(phishing_rows, 3)
    shown = _explain(s, batch).json()
    predicted = s.predict(rows(phishing_rows, 1)).json()["request_id"]
    s.g.decisions.flush()
    record = s.g.decisions.get(shown["request_id"])
    assert record is not None and record.endpoint == "explain"
    assert record.input == batch and record.model_ref == "phish@1"
    assert record.client == s.g.keys.authenticate(s.keys["explain"]).key_id
    for logged, explained in zip(record.output, shown["explanations"], strict=True):
        assert logged["label"] == explained["label"]
        assert logged["explanation"]["values"] == explained["values"]
        assert logged["explanation"]["base_value"] == shown["base_value"]
        assert logged["explanation"]["explained_class"] == shown["explained_class"]
    assert record.guards["explain"] == {"budget_left": 17}  # 20 per hour, 3 explained
    assert "extraction" in record.guards
    # a prediction's record keeps the stored form it had before explanations were logged
    assert s.g.decisions.get(predicted).endpoint == "predict"
    stored = s.g.decisions.get(predicted).model_dump(mode="json")
    assert "endpoint" not in stored
    assert s.g.decisions.verify().summary() == "ok: 2 decisions, 0 feedback"
    again = reproduce_decision(s.store, s.g.decisions, shown["request_id"])
    assert again.endpoint == "explain" and again.reproduced and len(again.rows) == 3


def test_explanations_are_refused_while_the_decision_log_cannot_write(
    serve: Any, phishing_rows: pd.DataFrame, tmp_path: Path
) -> None:
    from tests.serve.test_refusals import Locked

    s = serve(guards={"extraction": {"enabled": False}})
    key = s.g.keys.create("explain", "e")
    lock = Locked(tmp_path / "serve.db")
    assert _explain(s, rows(phishing_rows, 1), key=key).status_code == 200
    s.clock.now += 2.5  # its record has waited longer than max_delay_s (2 s)
    refused = _explain(s, rows(phishing_rows, 1, start=1), key=key)
    assert refused.status_code == 503 and "not writing" in refused.json()["detail"]
    lock.release()
    assert s.g.decisions.settle(30.0)
    assert [r.endpoint for r in s.g.decisions.iter_recent(5)] == ["explain"]
