"""Efficacy from feedback: the metrics against hand-computed and published values, the
comparison's verdicts, and the server's gauges as feedback arrives."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest

from mlwarden.errors import ParameterError
from mlwarden.serve import Outcome, compare, efficacy, wilson
from mlwarden.serve._efficacy import calibration_error, two_proportions
from mlwarden.serve._efficacy_monitor import EfficacyMonitor, default_positive
from tests.serve.test_app import rows


def outcomes(tp: int, fp: int, fn: int, tn: int) -> list[Outcome]:
    return (
        [Outcome(True, True)] * tp
        + [Outcome(True, False)] * fp
        + [Outcome(False, True)] * fn
        + [Outcome(False, False)] * tn
    )


def test_wilson_interval_matches_the_published_value() -> None:
    # 8 of 10: Wilson 95% interval 0.490 to 0.943 (Newcombe 1998, table I)
    interval = wilson(8, 10)
    assert interval.value == 0.8
    assert interval.low == pytest.approx(0.4902, abs=1e-4)
    assert interval.high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 0).value is None
    with pytest.raises(ParameterError, match="0 <= successes <= n"):
        wilson(11, 10)


def test_precision_recall_f1_of_hand_counted_outcomes() -> None:
    measured = efficacy(outcomes(tp=6, fp=2, fn=3, tn=9), min_labelled=20)
    assert measured.labelled == 20 and measured.status == "measured"
    assert measured.precision.value == pytest.approx(6 / 8)
    assert measured.recall.value == pytest.approx(6 / 9)
    assert measured.f1.value == pytest.approx(12 / 17)  # 2tp / (2tp + fp + fn)
    assert measured.precision.low == pytest.approx(wilson(6, 8).low)
    assert measured.f1.low is not None and measured.f1.high is not None
    assert measured.f1.low < 12 / 17 < measured.f1.high
    assert measured.calibration_error is None  # no probabilities were given


def test_too_few_labelled_rows_are_inconclusive_and_undefined_metrics_are_none() -> None:
    few = efficacy(outcomes(tp=3, fp=1, fn=1, tn=4), min_labelled=30)
    assert few.status == "inconclusive" and few.labelled == 9
    none_predicted = efficacy(outcomes(tp=0, fp=0, fn=5, tn=5), min_labelled=1)
    assert none_predicted.precision.value is None and none_predicted.recall.value == 0.0
    assert none_predicted.f1.value == 0.0


def test_f1_interval_narrows_with_more_labelled_rows() -> None:
    small = efficacy(outcomes(tp=8, fp=2, fn=2, tn=8))
    large = efficacy(outcomes(tp=80, fp=20, fn=20, tn=80))
    assert small.f1.value == large.f1.value == pytest.approx(0.8)
    assert small.f1.high - small.f1.low > 2 * (large.f1.high - large.f1.low)  # type: ignore[operator]


def test_expected_calibration_error_by_hand() -> None:
    rows = [
        Outcome(False, False, 0.1),
        Outcome(False, True, 0.3),
        Outcome(True, True, 0.8),
        Outcome(True, True, 0.9),
        Outcome(True, False, 0.6),
    ]
    # bin [0, .5): mean p .2, positive rate .5 -> .3 * 2/5; bin [.5, 1]: .7667 vs .6667 -> .1 * 3/5
    assert calibration_error(rows, bins=2) == pytest.approx(0.12 + 0.06)
    perfect = [Outcome(True, True, 1.0), Outcome(False, False, 0.0)]
    assert calibration_error(perfect, bins=10) == 0.0
    with pytest.raises(ParameterError, match="at least 1 bin"):
        calibration_error(rows, bins=0)


def test_two_proportions_matches_newcombe_and_the_z_test() -> None:
    # Newcombe 1998 example: 56/70 vs 48/80, hybrid score interval 0.0524 to 0.3339
    d = two_proportions("recall", 48, 80, 56, 70)
    assert d.difference == pytest.approx(0.2)
    assert d.low == pytest.approx(0.0524, abs=1e-4) and d.high == pytest.approx(0.3339, abs=1e-4)
    # 40/100 vs 60/100: pooled .5, se .0707, z = 2.828, two-sided p = erfc(2) = 0.00468
    d = two_proportions("precision", 40, 100, 60, 100)
    assert d.p_value == pytest.approx(0.0046777, abs=1e-6) and d.significant
    same = two_proportions("precision", 40, 100, 41, 100)
    assert not same.significant and same.low < 0 < same.high  # type: ignore[operator]


def test_compare_names_the_better_version_only_when_the_data_decide() -> None:
    worse, better = outcomes(40, 10, 10, 40), outcomes(48, 2, 2, 48)
    result = compare("m@1", worse, "m@2", better)
    assert result.verdict == "b"
    f1 = result.differences[0]
    assert f1.metric == "f1" and f1.difference == pytest.approx(0.96 - 0.8)
    assert f1.significant and 0 < f1.low < 0.16 < f1.high  # type: ignore[operator]
    assert "m@2 has a higher F1 than m@1 by 0.160" in result.reason
    assert compare("m@2", better, "m@1", worse).verdict == "a"
    tie = compare("m@1", worse, "m@2", outcomes(41, 10, 9, 40))
    assert tie.verdict == "inconclusive" and "not significant" in tie.reason
    small = compare("m@1", worse[:10], "m@2", better)
    assert small.verdict == "inconclusive"
    assert "m@1 has 10, m@2 has 100, at least 30" in small.reason


def test_default_positive_is_the_last_class_in_sorted_order() -> None:
    assert default_positive(["phishing", "legitimate"]) == "phishing"
    assert default_positive([10, 2, -1]) == "10"  # numeric labels sort as numbers


# -- the server's gauges ----------------------------------------------------------------------


def gauge(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", text, flags=re.MULTILINE)
    assert match, f"{name}{{{wanted}}} not exported"
    return float(match.group(1))


def test_feedback_updates_rolling_efficacy_gauges_per_version_and_arm(
    serve: Any, phishing_rows: pd.DataFrame
) -> None:
    s = serve(shadow="phish@2", efficacy={"window": 10, "min_labelled": 5})
    feedback = {"Authorization": f"Bearer {s.keys['feedback']}"}
    admin = {"Authorization": f"Bearer {s.keys['admin']}"}
    served: list[str] = []
    for start in (0, 6, 12):  # 18 labelled rows, every one truly phishing; the window keeps 10
        answer = s.predict(rows(phishing_rows, 6, start)).json()
        served += [p["label"] for p in answer["predictions"]]
        s.g.decisions.flush()
        body = {"request_id": answer["request_id"], "labels": ["phishing"] * 6}
        assert s.client.post("/v1/feedback", json=body, headers=feedback).status_code == 200
    text = s.client.get("/metrics", headers=admin).text
    arm_a = {"model": "phish", "version": "1", "arm": "a"}
    assert gauge(text, "mlwarden_efficacy_labelled", **arm_a) == 10
    caught = served[-10:].count("phishing")
    assert gauge(text, "mlwarden_efficacy_recall", **arm_a) == pytest.approx(caught / 10)
    if caught:
        assert gauge(text, "mlwarden_efficacy_precision", **arm_a) == 1.0
    assert gauge(text, "mlwarden_efficacy_calibration_error", **arm_a) >= 0
    shadow = {"model": "phish", "version": "2", "arm": "shadow"}
    assert gauge(text, "mlwarden_efficacy_labelled", **shadow) == 10
    # a restarted server seeds its windows from the feedback already in the log
    again = EfficacyMonitor.of(s.g)
    assert again.measure("phish@1").recall.value == pytest.approx(caught / 10)
    assert again.measure("phish@1").labelled == 10


def test_f1_undefined_on_one_side_decides_nothing() -> None:
    result = compare("m@1", outcomes(0, 0, 0, 50), "m@2", outcomes(20, 5, 5, 20))
    assert result.verdict == "inconclusive" and "F1 is undefined" in result.reason
    assert result.differences[0].difference is None and not result.differences[0].significant


def test_ab_arms_get_their_own_gauges_and_a_significance_test(
    serve: Any, phishing_rows: pd.DataFrame
) -> None:
    s = serve(
        routes=[{"model": "phish@1"}, {"model": "phish@2"}],
        efficacy={"window": 50, "min_labelled": 5},
    )
    keys: dict[str, str] = {}
    for n in range(40):  # routing is sticky per key: find a key for each arm
        key = s.g.keys.create("predict", f"client-{n}")
        keys.setdefault(s.predict(rows(phishing_rows, 1), key=key).json()["model"], key)
        if len(keys) == 2:
            break
    assert set(keys) == {"phish@1", "phish@2"}
    feedback = {"Authorization": f"Bearer {s.keys['feedback']}"}
    caught: dict[str, int] = {}
    for ref, key in keys.items():
        answer = s.predict(rows(phishing_rows, 8, 20), key=key).json()
        caught[ref] = [p["label"] for p in answer["predictions"]].count("phishing")
        s.g.decisions.flush()
        body = {"request_id": answer["request_id"], "labels": ["phishing"] * 8}
        assert s.client.post("/v1/feedback", json=body, headers=feedback).status_code == 200
    text = s.client.get("/metrics", headers={"Authorization": f"Bearer {s.keys['admin']}"}).text
    for version, arm in (("1", "a"), ("2", "b")):
        labels = {"model": "phish", "version": version, "arm": arm}
        assert gauge(text, "mlwarden_efficacy_labelled", **labels) == 8
    # every row truly phishing: tp = caught, fp = 0, fn = 8 - tp, so F1 = 2 tp / (tp + 8)
    f1 = {ref: 2 * tp / (tp + 8) for ref, tp in caught.items()}
    arms = {"a": "phish@1", "b": "phish@2"}
    difference = gauge(text, "mlwarden_efficacy_ab_f1_difference", **arms)
    assert difference == pytest.approx(f1["phish@2"] - f1["phish@1"])
    restarted = EfficacyMonitor.of(s.g).compare_arms()
    assert restarted is not None
    assert restarted.differences[0].difference == pytest.approx(difference)
    significant = gauge(text, "mlwarden_efficacy_ab_significant", **arms)
    assert significant == float(restarted.verdict != "inconclusive")


def _monitor(decisions: Any = None) -> EfficacyMonitor:
    from mlwarden.serve import EfficacyPolicy
    from mlwarden.serve._metrics import ServerMetrics

    policy = EfficacyPolicy(window=10, min_labelled=1)
    return EfficacyMonitor(policy, {"m@1": "a"}, {"m@1": "yes"}, {}, ServerMetrics(), decisions)


def _decision(labels: list[str], said: list[str]) -> Any:
    from datetime import UTC, datetime

    from mlwarden.serve._decisions import DecisionRecord, Feedback

    record = DecisionRecord(
        request_id="0" * 32,
        client="k",
        model_ref="m@1",
        model_sha256="a" * 64,
        lineage_head="a" * 64,
        input=[{"x": i} for i in range(len(said))],
        output=[{"label": s} for s in said],
        latency_ms=1.0,
    )
    now = datetime.now(UTC)
    fb = Feedback(request_id=record.request_id, labels=labels, analyst="x", created_at=now)
    return record.model_copy(update={"feedback": [fb]})


def test_a_corrected_feedback_replaces_the_rows_it_judged() -> None:
    monitor = _monitor()
    monitor.observe(_decision(["no", "no"], ["yes", "yes"]))
    assert monitor.measure("m@1").precision.value == 0.0
    monitor.observe(_decision(["yes", "no"], ["yes", "yes"]))  # the analyst corrects one label
    measured = monitor.measure("m@1")
    assert measured.labelled == 2 and measured.precision.value == 0.5


def test_feedback_whose_decision_cannot_be_read_leaves_the_gauges_alone() -> None:
    from mlwarden.errors import IntegrityError

    class Broken:
        def get(self, request_id: str) -> None:
            raise IntegrityError(f"decision {request_id} is unreadable: run verify")

    monitor = _monitor(Broken())
    monitor.feedback_arrived("0" * 32)  # logged, not raised: the feedback itself was stored
    assert monitor.measure("m@1").labelled == 0
