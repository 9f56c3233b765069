"""A conformance suite for extraction detectors, modelled on scikit-learn's ``check_estimator``.

:func:`check_detector` fits fresh detectors from a factory on synthetic benign traffic (a
linear three-class model over eight normal columns and one categorical column) and runs the
named checks of :data:`DETECTOR_CHECKS` on them; the first that fails raises an
``AssertionError`` naming it. Third parties run it over their own detectors; the test suite
runs it over every shipped one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

import numpy as np
from numpy.typing import NDArray

from mlwarden.errors import MlwardenError
from mlwarden.serve import BenignTraffic, Detector, FeatureSpace, Pattern, Verdict

__all__ = ["DETECTOR_CHECKS", "check_detector"]

FloatArray = NDArray[np.float64]
Factory = Callable[[], Detector]
Pairs = list[tuple[FloatArray, FloatArray]]

_NUMERIC = 8
_CATEGORIES = ("a", "b", "c")
_CATEGORY_P = (0.6, 0.3, 0.1)
_INDICATOR = float(np.sqrt(0.5))  # a known category's value in a FeatureSpace
_QUERIES = 300  # per synthetic client: past every shipped detector's warm-up


@dataclass(frozen=True)
class _Traffic:
    """Synthetic benign traffic, benign clients and attack streams, all from one seed."""

    benign: BenignTraffic
    clients: tuple[Pairs, ...]
    attacks: dict[str, Pairs]


def _space() -> FeatureSpace:
    numeric = [f"x{j}" for j in range(_NUMERIC)]
    return FeatureSpace(numeric, np.zeros(_NUMERIC), np.ones(_NUMERIC), {"c": list(_CATEGORIES)})


def _rows(rng: np.random.Generator, n: int) -> FloatArray:
    """Encoded benign rows: standard normal numbers and one category per row."""
    categorical = np.zeros((n, len(_CATEGORIES)))
    categorical[np.arange(n), rng.choice(len(_CATEGORIES), n, p=_CATEGORY_P)] = _INDICATOR
    return np.hstack([rng.normal(size=(n, _NUMERIC)), categorical])


def _traffic(seed: int) -> _Traffic:
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(_NUMERIC + len(_CATEGORIES), 3))

    def proba(rows: FloatArray) -> FloatArray:
        logits = rows @ weights
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(exp / exp.sum(axis=1, keepdims=True))

    def pairs(rows: FloatArray) -> Pairs:
        return list(zip(rows, proba(rows), strict=True))

    held_out = _rows(rng, 500)
    benign = BenignTraffic(_space(), _rows(rng, 1000), held_out, proba(held_out))
    clients = tuple(pairs(_rows(rng, _QUERIES)) for _ in range(3))
    # Uniform over the numeric range of training rows, categories at random.
    low, high = benign.train[:, :_NUMERIC].min(axis=0), benign.train[:, :_NUMERIC].max(axis=0)
    uniform = _rows(rng, _QUERIES)
    uniform[:, :_NUMERIC] = rng.uniform(low, high, size=(_QUERIES, _NUMERIC))
    # Natural rows the model answers with the smallest top-1 margins.
    candidates = _rows(rng, 20 * _QUERIES)
    top2 = -np.sort(-proba(candidates), axis=1)[:, :2]
    boundary = candidates[np.argsort(top2[:, 0] - top2[:, 1])[:_QUERIES]]
    rng.shuffle(boundary)
    # Jacobian-augmentation style: a seed row, then small steps around it, seed after seed.
    seeds = _rows(rng, _QUERIES // 10)
    perturbation = np.repeat(seeds, 10, axis=0)
    steps = np.arange(len(perturbation)) % 10 != 0
    perturbation[steps, :_NUMERIC] += rng.normal(0.0, 0.02, size=(int(steps.sum()), _NUMERIC))
    attacks = {
        "uniform": pairs(uniform),
        "boundary": pairs(boundary),
        "perturbation": pairs(perturbation),
    }
    return _Traffic(benign, clients, attacks)


def _fitted(factory: Factory, traffic: _Traffic) -> Detector:
    detector = factory()
    fitted = detector.fit(traffic.benign)
    assert fitted is detector, "fit must return the detector itself"
    return detector


def _run(detector: Detector, client: str, stream: Pairs) -> list[Verdict]:
    return [detector.observe_answer(client, x, p) for x, p in stream]


def _check_verdicts_well_formed(factory: Factory, traffic: _Traffic) -> None:
    detector = _fitted(factory, traffic)
    for verdict in _run(detector, "client", traffic.clients[0][:50]):
        assert isinstance(verdict, Verdict), f"observe_answer returned {type(verdict).__name__}"
        assert verdict.detector == detector.name, f"verdict names {verdict.detector!r}"
        assert verdict.client == "client", f"verdict is about {verdict.client!r}"
        assert verdict.n >= 0, f"verdict counts {verdict.n} observations"


def _check_no_alarm_on_benign_clients(factory: Factory, traffic: _Traffic) -> None:
    detector = _fitted(factory, traffic)
    for i, stream in enumerate(traffic.clients):
        alarms = [v.reason for v in _run(detector, f"benign{i}", stream) if v.alarm]
        assert not alarms, f"benign client {i} alarmed {len(alarms)} times: {alarms[0]}"


def _check_alarms_on_claimed_patterns(factory: Factory, traffic: _Traffic) -> None:
    detector = _fitted(factory, traffic)
    unknown = set(detector.catches) - set(get_args(Pattern))
    assert not unknown, f"claims unknown patterns {sorted(unknown)}"
    for pattern in sorted(detector.catches):
        verdicts = _run(detector, f"thief-{pattern}", traffic.attacks[pattern])
        assert any(v.alarm for v in verdicts), f"no alarm on the {pattern!r} pattern it claims"


def _check_clients_are_independent(factory: Factory, traffic: _Traffic) -> None:
    alone, beside = _fitted(factory, traffic), _fitted(factory, traffic)
    expected = _run(alone, "b", traffic.clients[1])
    other = traffic.attacks["uniform"]
    seen = []
    for (x, p), (xa, pa) in zip(traffic.clients[1], other, strict=True):
        beside.observe_answer("a", xa, pa)
        seen.append(beside.observe_answer("b", x, p))
    assert seen == expected, "another client's queries changed this client's verdicts"


def _check_reset_forgets_a_client(factory: Factory, traffic: _Traffic) -> None:
    fresh, used = _fitted(factory, traffic), _fitted(factory, traffic)
    _run(used, "a", traffic.attacks["perturbation"])
    used.reset("a")
    assert _run(used, "a", traffic.clients[2]) == _run(fresh, "a", traffic.clients[2]), (
        "a reset client is judged differently from a new one"
    )


def _check_deterministic(factory: Factory, traffic: _Traffic) -> None:
    first, second = _fitted(factory, traffic), _fitted(factory, traffic)
    stream = traffic.clients[0] + traffic.attacks["uniform"]
    assert _run(first, "a", stream) == _run(second, "a", stream), (
        "two detectors fitted on the same traffic judge the same stream differently"
    )


def _check_rejects_bad_input(factory: Factory, traffic: _Traffic) -> None:
    detector = _fitted(factory, traffic)
    x, proba = traffic.clients[0][0]
    try:
        detector.observe_answer("a", np.append(x, 0.0), proba)
    except MlwardenError:
        return
    raise AssertionError(f"a row of {len(x) + 1} features instead of {len(x)} was accepted")


DETECTOR_CHECKS: tuple[tuple[str, Callable[[Factory, _Traffic], None]], ...] = (
    ("verdicts_well_formed", _check_verdicts_well_formed),
    ("no_alarm_on_benign_clients", _check_no_alarm_on_benign_clients),
    ("alarms_on_claimed_patterns", _check_alarms_on_claimed_patterns),
    ("clients_are_independent", _check_clients_are_independent),
    ("reset_forgets_a_client", _check_reset_forgets_a_client),
    ("deterministic", _check_deterministic),
    ("rejects_bad_input", _check_rejects_bad_input),
)
"""The named checks :func:`check_detector` runs, in order."""


def check_detector(detector_factory: Factory, *, seed: int = 0) -> None:
    """Check that a detector honours the :class:`~mlwarden.serve.Detector` contract.

    Each check fits new detectors from ``detector_factory`` on the same synthetic benign
    traffic: ``fit`` returns the detector; verdicts name the detector and the client; benign
    clients raise no alarm; each pattern in ``catches`` raises one; a client's verdicts do
    not depend on other clients, nor on its own queries before ``reset``; two detectors
    fitted alike judge alike; a row of the wrong width raises a
    :class:`~mlwarden.errors.MlwardenError`.

    Parameters
    ----------
    detector_factory : callable
        Returns a new, unfitted detector on each call.
    seed : int
        Seed of the synthetic traffic.

    Raises
    ------
    AssertionError
        Naming the first check that failed and why.
    """
    traffic = _traffic(seed)
    for name, check in DETECTOR_CHECKS:
        try:
            check(detector_factory, traffic)
        except AssertionError as error:
            raise AssertionError(f"check_detector: {name} failed: {error}") from error
