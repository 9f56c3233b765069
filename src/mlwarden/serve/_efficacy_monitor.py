"""Efficacy of the running server: decisions joined with their feedback, per model version and
A/B arm, over a rolling window of labelled rows, exported as ``mlwarden_efficacy_*`` gauges.

The same joining serves ``mlwarden models compare`` (:func:`labelled_outcomes`), so the CLI and
the gauges measure the same thing.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlwarden.errors import StoreError
from mlwarden.serve._efficacy import Comparison, Efficacy, Outcome, compare, efficacy

if TYPE_CHECKING:
    from mlwarden.serve._config import EfficacyPolicy
    from mlwarden.serve._decision_records import DecisionRecord
    from mlwarden.serve._decisions import DecisionLog
    from mlwarden.serve._guarded import Guarded
    from mlwarden.serve._metrics import ServerMetrics

_log = logging.getLogger(__name__)


def default_positive(labels: Iterable[Any]) -> str:
    """The last label in sorted order (numeric when every label is a number), as a string:
    scikit-learn's positive class of a binary model."""
    seen = {str(v) for v in labels}
    try:
        return str(max(seen, key=float))
    except ValueError:
        return max(seen)


def record_labels(record: DecisionRecord) -> set[str]:
    """Every class a decision names: predicted labels, probability keys and feedback labels."""
    found: set[str] = set()
    for answer in record.output if isinstance(record.output, list) else []:
        if isinstance(answer, dict):
            found.add(str(answer.get("label")))
            probabilities = answer.get("probabilities")
            if isinstance(probabilities, dict):
                found.update(probabilities)
    if record.feedback:
        found.update(str(v) for v in record.feedback[-1].labels)
    return found


def record_outcomes(
    record: DecisionRecord, positive: str, shadow_classes: Mapping[str, Sequence[str]] | None = None
) -> dict[str, list[Outcome]]:
    """The latest feedback's labels against what each model answered, by ``name@version``.

    The served answer gives P(positive) when the output policy showed probabilities; a shadow's
    only when its classes are given (its probabilities are stored in class order).
    """
    if not record.feedback:
        return {}
    truth = [str(v) == positive for v in record.feedback[-1].labels]
    served: list[Outcome] = []
    for answer, actual in zip(_rows(record.output), truth, strict=False):
        probabilities = answer.get("probabilities")
        p = probabilities.get(positive) if isinstance(probabilities, dict) else None
        served.append(Outcome(str(answer.get("label")) == positive, actual, _prob(p)))
    found = {record.model_ref: served}
    for shadow in record.shadow:
        out = shadow.output if isinstance(shadow.output, dict) else {}
        labels = out.get("labels")
        if not isinstance(labels, list):
            continue  # the shadow failed on this request
        classes = list((shadow_classes or {}).get(shadow.model_ref, ()))
        column = classes.index(positive) if positive in classes else None
        rows = out.get("probabilities")
        probs = rows if isinstance(rows, list) else [None] * len(labels)
        found[shadow.model_ref] = [
            Outcome(str(label) == positive, actual, _at(row, column))
            for label, row, actual in zip(labels, probs, truth, strict=False)
        ]
    return found


def _rows(output: Any) -> list[dict[str, Any]]:
    return [a if isinstance(a, dict) else {} for a in output] if isinstance(output, list) else []


def _at(row: Any, column: int | None) -> float | None:
    ok = isinstance(row, list) and column is not None and column < len(row)
    return _prob(row[column]) if ok else None


def _prob(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def labelled_outcomes(records: Iterable[DecisionRecord], positive: str) -> dict[str, list[Outcome]]:
    """Every labelled row of ``records`` by the model version that answered it (served or
    shadow), in decision order."""
    by_ref: dict[str, list[Outcome]] = {}
    for record in records:
        for ref, outcomes in record_outcomes(record, positive).items():
            by_ref.setdefault(ref, []).extend(outcomes)
    return by_ref


class EfficacyMonitor:
    """Rolling windows of labelled rows per served version (arm ``a``/``b``, or ``shadow``),
    updated as feedback arrives and exported as gauges.

    A later feedback for a request replaces its earlier rows in the window.
    """

    def __init__(
        self,
        policy: EfficacyPolicy,
        arms: dict[str, str],
        positives: dict[str, str],
        shadow_classes: Mapping[str, Sequence[str]],
        metrics: ServerMetrics,
        decisions: DecisionLog | None = None,
    ) -> None:
        self.decisions = decisions
        self.policy = policy
        self.arms = arms
        self.positives = positives
        self.shadow_classes = shadow_classes
        self.metrics = metrics
        self.windows: dict[str, OrderedDict[str, list[Outcome]]] = {r: OrderedDict() for r in arms}

    @classmethod
    def of(cls, g: Guarded) -> EfficacyMonitor:
        """The monitor of a server's deployment, seeded from the feedback already logged."""
        policy = g.deployment.efficacy
        arms = {m.ref: "ab"[i] for i, m in enumerate(g.routes)}
        models = list(g.routes)
        if g.shadow is not None:
            arms.setdefault(g.shadow.ref, "shadow")
            models.append(g.shadow)
        positives = {
            m.ref: str(policy.positive)
            if policy.positive is not None
            else default_positive(m.classes.tolist())
            for m in models
        }
        shadow = {g.shadow.ref: [str(c) for c in g.shadow.classes]} if g.shadow else {}
        monitor = cls(policy, arms, positives, shadow, g.metrics, g.decisions)
        try:
            seed = g.decisions.labelled(newest=policy.window * len(arms))
        except StoreError as exc:  # an unreadable row: serve anyway, verify will name it
            _log.error("efficacy windows start empty: %s", exc)
            seed = []
        for record in seed:
            monitor.observe(record)
        return monitor

    def feedback_arrived(self, request_id: str) -> None:
        """Take the decision's new feedback in; a failure to read it is logged, never raised
        (the feedback itself is already stored)."""
        try:
            record = self.decisions.get(request_id) if self.decisions is not None else None
        except StoreError as exc:
            _log.error("efficacy not updated for request %s: %s", request_id, exc)
            return
        if record is not None:
            self.observe(record)

    def observe(self, record: DecisionRecord) -> None:
        """Take a decision's latest feedback into the windows and update the gauges."""
        positive = self.positives.get(record.model_ref)
        if positive is None:
            return  # answered by a version this server no longer serves
        for ref, outcomes in record_outcomes(record, positive, self.shadow_classes).items():
            window = self.windows.get(ref)
            if window is None or self.positives[ref] != positive:
                continue
            window.pop(record.request_id, None)
            window[record.request_id] = outcomes
            held = sum(len(v) for v in window.values())
            while held - len(next(iter(window.values()))) >= self.policy.window:
                held -= len(window.popitem(last=False)[1])
            self._export(ref, self.measure(ref))
        arms = self.compare_arms()
        if arms is not None:
            f1 = arms.differences[0]
            labels = {"a": arms.a, "b": arms.b}
            diff = float("nan") if f1.difference is None else f1.difference
            self.metrics.efficacy_ab_f1_difference.labels(**labels).set(diff)
            decided = arms.verdict != "inconclusive"
            self.metrics.efficacy_ab_significant.labels(**labels).set(decided)

    def compare_arms(self) -> Comparison | None:
        """Arm b against arm a over their windows (None without an A/B split)."""
        by_arm = {arm: ref for ref, arm in self.arms.items()}
        if "a" not in by_arm or "b" not in by_arm:
            return None
        a, b = by_arm["a"], by_arm["b"]
        return compare(
            a,
            self._rows(a),
            b,
            self._rows(b),
            min_labelled=self.policy.min_labelled,
            bins=self.policy.bins,
        )

    def _rows(self, ref: str) -> list[Outcome]:
        rows = [o for outcomes in self.windows[ref].values() for o in outcomes]
        return rows[-self.policy.window :]

    def measure(self, ref: str) -> Efficacy:
        """Efficacy of ``ref`` over its window (the newest ``window`` labelled rows)."""
        return efficacy(
            self._rows(ref),
            min_labelled=self.policy.min_labelled,
            bins=self.policy.bins,
        )

    def _export(self, ref: str, measured: Efficacy) -> None:
        name, _, version = ref.partition("@")
        labels = {"model": name, "version": version, "arm": self.arms[ref]}
        nan = float("nan")
        m = self.metrics
        m.efficacy_labelled.labels(**labels).set(measured.labelled)
        for gauge, value in (
            (m.efficacy_precision, measured.precision.value),
            (m.efficacy_recall, measured.recall.value),
            (m.efficacy_f1, measured.f1.value),
            (m.efficacy_calibration_error, measured.calibration_error),
        ):
            gauge.labels(**labels).set(nan if value is None else value)
